"""The Higgs Audio V2 worker end to end: real local RunPod API server over HTTP, real SeaweedFS S3."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
import soundfile

pytestmark = pytest.mark.integration

HOP = 960  # samples per frame of the audio tokenizer at 24 kHz


@pytest.fixture(scope="module")
def worker(start_worker, s3_server):
    handle = start_worker("higgs_audio", **s3_server.env())
    yield handle
    handle.stop()


def _reference_base64(seconds: float = 1.5, rate: int = 16000) -> str:
    times = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * 180 * times), rate, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


def _download(url: str) -> np.ndarray:
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    samples, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == 24000
    return samples


def _frames_add_up(output: dict) -> None:
    chunks = output["details"]["chunks"]
    samples = _download(output["audio_url"])
    assert len(samples) == sum(chunk["frames"] for chunk in chunks) * HOP > 0
    assert output["duration_seconds"] == pytest.approx(sum(chunk["duration_seconds"] for chunk in chunks), abs=1e-3)


def test_zero_shot_and_the_response_shape(worker, s3_server):
    job = {"transcript": "The sun rises in the east.", "scene_prompt": "A quiet room.", "seed": 11, "top_k": 40}
    output = worker.output(job | {"max_new_tokens": 120})
    assert output["success"] is True
    assert output["audio_url"] == output["outputs"][0]["url"] and "X-Amz-Signature=" in output["audio_url"]
    assert output["outputs"][0]["s3_uri"].startswith("s3://audio-results/outputs/higgs_audio/")
    assert output["sample_rate"] == 24000 and output["outputs"][0]["channels"] == 1
    assert output["duration_seconds"] == output["outputs"][0]["duration_seconds"] > 0
    assert output["text_output"] == "The sun rises in the east."
    assert output["metadata"] == {
        "model_used": "tiny-random/higgs-audio-v2-generation",
        "voice_clone": False,
        "generation_parameters": {
            "temperature": 1.0,
            "top_k": 40,
            "top_p": 0.95,
            "max_new_tokens": 120,
            "seed": 11,
            "scene_prompt": "A quiet room.",
            "chunk_method": None,
            "chunk_max_word_num": 200,
            "chunk_max_num_turns": 1,
            "ras_win_len": 7,
            "ras_win_max_num_repeat": 2,
        },
    }
    _frames_add_up(output)


def test_preset_voice(worker):
    output = worker.output({"transcript": "Hello from a preset.", "ref_audio": "demo_voice", "seed": 3})
    assert output["metadata"]["voice_clone"] is True
    assert output["details"]["voices"] == [{"speaker": 0, "preset": "demo_voice"}]
    assert output["parameters"]["ref_audio"] == ["demo_voice"]  # a preset name is not input audio
    _frames_add_up(output)


def test_base64_reference_with_its_transcript(worker):
    job = {"transcript": "Cloned from an upload.", "ref_audio": _reference_base64(), "ref_text": "a hum", "seed": 5}
    output = worker.output(job)
    assert output["metadata"]["voice_clone"] is True
    assert output["parameters"]["ref_audio"] == ["<provided>"]  # base64 is not echoed back
    assert output["details"]["voices"] == [{"speaker": 0, "preset": None}]
    _frames_add_up(output)


def test_two_speaker_dialogue(worker):
    job = {
        "transcript": "[SPEAKER0] Did you hear that? [SPEAKER1] I did. [SPEAKER0] Let us go.",
        "ref_audio": ["demo_voice", _reference_base64()],
        "ref_text": ["", "a hum"],
        "chunk_method": "speaker",
        "seed": 8,
    }
    output = worker.output(job)
    assert [chunk["text"] for chunk in output["details"]["chunks"]] == [
        "[SPEAKER0] Did you hear that?",
        "[SPEAKER1] I did.",
        "[SPEAKER0] Let us go.",
    ]
    _frames_add_up(output)


def test_chunked_long_transcript_joins_every_chunk(worker):
    words = " ".join(f"word{index}" for index in range(14))
    job = {"transcript": words, "chunk_method": "word", "chunk_max_word_num": 5, "max_new_tokens": 60, "seed": 21}
    output = worker.output(job)
    chunks = output["details"]["chunks"]
    assert [len(chunk["text"].split()) for chunk in chunks] == [5, 5, 4]
    assert sum(chunk["frames"] > 0 for chunk in chunks) >= 2  # more than one chunk made audio
    _frames_add_up(output)


def test_an_unknown_preset_lists_the_available_ones(worker):
    error = worker.error({"transcript": "x", "ref_audio": "nobody"})
    assert error == "ref_audio.0: unknown voice preset 'nobody'; available: demo_voice"
    assert worker.output({"transcript": "still here", "max_new_tokens": 30, "seed": 1})["success"] is True
