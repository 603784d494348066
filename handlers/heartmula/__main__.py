"""python -m handlers.heartmula [--rp_serve_api | --test_input '<json>']"""

from handlers.heartmula.adapter import HeartMuLaSong
from shared.serving import serve

serve(HeartMuLaSong)
