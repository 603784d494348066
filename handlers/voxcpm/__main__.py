"""python -m handlers.voxcpm [--rp_serve_api | --test_input '<json>']"""

from handlers.voxcpm.adapter import VoxCPM
from shared.serving import serve

serve(VoxCPM)
