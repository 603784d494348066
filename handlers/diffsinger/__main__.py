"""python -m handlers.diffsinger [--rp_serve_api | --test_input '<json>']"""

from handlers.diffsinger.adapter import DiffSinger
from shared.serving import serve

serve(DiffSinger)
