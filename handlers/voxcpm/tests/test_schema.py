"""VoxCPM requests: voice-prompt rules and what is refused (pure: no model)."""

import base64
import io

import numpy as np
import pytest
import soundfile

from handlers.voxcpm.schema import VoxCPMRequest
from shared.schemas import parse_request
from shared.testing import refusal

pytestmark = pytest.mark.unit

CAP = 20 * 1024 * 1024


def prompt_wav(rate: int = 22050, seconds: float = 1.2) -> str:
    times = np.arange(int(rate * seconds)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * 200 * times), rate, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


BAD_INPUT = [
    (
        {"target_text": "x", "prompt_audio": prompt_wav(), "prompt_latents": "AAAAAA==", "prompt_text": "y"},
        "prompt_audio and prompt_latents: give one voice prompt, not both",
    ),
    ({"target_text": "   "}, "target_text: String should have at least 1 character"),
    ({"target_text": "x", "prompt_audio": prompt_wav(), "prompt_text": "y", "prompt_audio_format": "aiff"},
     "prompt_audio_format: Input should be 'wav', 'mp3', 'flac' or 'ogg'"),
    ({"target_text": "x", "prompt_audio": prompt_wav(), "prompt_text": "y", "prompt_audio_format": "mp3"},
     "prompt_audio_format: declared 'mp3' but the audio is WAV"),
    ({"target_text": "x", "prompt_audio": prompt_wav()}, "prompt_text: required with prompt_audio"),
    ({"target_text": "x", "prompt_text": "y"}, "prompt_text: given without prompt_audio or prompt_latents"),
    ({"task": "encode_latents", "target_text": "x"}, "task 'encode_latents': takes prompt_audio only"),
    ({"task": "encode_latents", "prompt_audio": prompt_wav(), "stream": True}, "(drop stream)"),
    ({"target_text": "x", "inference_timesteps": 0}, "inference_timesteps: Input should be greater than or equal"),
    ({"target_text": "x", "prompt_latents": "not base64!", "prompt_text": "y"}, "prompt_latents: must be base64"),
    ({"target_text": "x", "denoise": True}, "denoise: applies to prompt_audio, which is not given"),
    ({}, "target_text: required for task 'tts'"),
]  # fmt: skip


@pytest.mark.parametrize(("job_input", "expected"), BAD_INPUT, ids=[str(i) for i in range(len(BAD_INPUT))])
def test_bad_input_is_a_clear_error(job_input, expected):
    assert expected in refusal(VoxCPMRequest, job_input, CAP)


def test_a_declared_container_that_matches_is_accepted():
    job = {"target_text": "x", "prompt_audio": prompt_wav(), "prompt_text": "y", "prompt_audio_format": "wav"}
    assert parse_request(VoxCPMRequest, job, CAP).prompt_audio_format == "wav"
    encode = parse_request(VoxCPMRequest, {"task": "encode_latents", "prompt_audio": prompt_wav()}, CAP)
    assert encode.output_count() == 0
