"""python -m handlers.musicgen [--rp_serve_api | --test_input '<json>']"""

from handlers.musicgen.adapter import MusicGen
from shared.serving import serve

serve(MusicGen)
