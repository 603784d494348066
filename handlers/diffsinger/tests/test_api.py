"""The DiffSinger worker end to end: the real local RunPod API server over HTTP, results in SeaweedFS."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
import soundfile

from handlers.diffsinger.tests.test_adapter import BAD_INPUTS, LENGTH, LYRICS, SEGMENT, SUNG_BAD_INPUTS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(start_worker, s3_server):
    handle = start_worker("diffsinger", **s3_server.env())
    yield handle
    handle.stop()


def _uploaded(result: dict) -> np.ndarray:
    response = requests.get(result["outputs"][0]["url"], timeout=30)
    assert response.status_code == 200
    samples, rate = soundfile.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 44100
    return samples


def test_a_two_segment_score_with_a_speaker_mix_and_a_key_shift_to_s3(worker):
    score = [SEGMENT, SEGMENT | {"offset": 3.0, "spk_mix": {"tiny.tenor": 1.0}}]
    result = worker.output(
        {"ds": score, "speaker_mix": {"tiny.alto": 0.7, "tiny.tenor": 0.3}, "key_shift": -2, "steps": 3}
    )
    assert result["outputs"][0]["s3_uri"].startswith("s3://audio-results/outputs/diffsinger/")
    assert result["details"] | {"speakers": None} == {
        "voicebank": "tiny-random-bank", "speakers": None, "segments": 2, "steps": 3, "depth": 0.6
    }  # fmt: skip
    assert result["parameters"]["ds"] == "<provided>"  # the score is not echoed back
    song = _uploaded(result)
    assert len(song) == round((3.0 + LENGTH) * 44100)
    first, second = song[: round(LENGTH * 44100)], song[3 * 44100 :]
    assert np.abs(first).max() > 0.01 and not np.allclose(first, second[: len(first)])  # the second is the tenor


@pytest.mark.parametrize(("job_input", "expected"), BAD_INPUTS[::3] + SUNG_BAD_INPUTS[::2])
def test_bad_input_over_http_then_a_good_job(worker, job_input, expected):
    assert expected in worker.error(job_input)
    assert worker.output({"ds": SEGMENT, "steps": 2})["outputs"]


def test_lyrics_on_notes_and_text_alone_to_s3(worker):
    sung = worker.output(LYRICS | {"speaker": "tiny.tenor"})
    assert sung["details"]["phonemes"] == "SP en/hh en/ah en/l en/ow SP | SP en/w en/er en/l en/d SP"
    assert len(_uploaded(sung)) == round(2.55 * 44100)
    spoken = worker.output({"model": "diffsinger", "text": "Hello"})  # the seed's request, as written
    assert spoken["outputs"][0]["s3_uri"].endswith(".wav") and np.abs(_uploaded(spoken)).max() > 0.01
