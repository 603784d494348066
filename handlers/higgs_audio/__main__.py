"""python -m handlers.higgs_audio [--rp_serve_api | --test_input '<json>']"""

from handlers.higgs_audio.adapter import HiggsAudio
from shared.serving import serve

serve(HiggsAudio)
