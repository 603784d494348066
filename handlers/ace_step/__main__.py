"""python -m handlers.ace_step [--rp_serve_api | --test_input '<json>']"""

from handlers.ace_step.adapter import AceStep
from shared.serving import serve

serve(AceStep)
