"""The ACE-Step 1.5 worker end to end: real local RunPod API server over HTTP, real SeaweedFS S3."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
import soundfile

pytestmark = pytest.mark.integration

RATE = 48000


@pytest.fixture(scope="module")
def worker(start_worker, s3_server):
    handle = start_worker("ace_step", **s3_server.env())
    yield handle
    handle.stop()


def _stem(seconds: float, rate: int, audio_format: str, channels: int = 1) -> str:
    times = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 110 * times) * (np.sin(2 * np.pi * 2 * times) > 0)  # a pulsing bass line
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([tone] * channels, axis=1), rate, format=audio_format)
    return base64.b64encode(buffer.getvalue()).decode()


def _downloaded(output: dict) -> np.ndarray:
    response = requests.get(output["url"], timeout=30)
    assert response.status_code == 200
    samples, rate = soundfile.read(io.BytesIO(response.content), always_2d=True)
    assert rate == RATE and samples.shape[1] == 2  # stereo 48 kHz, whatever came in
    return samples


def test_text2music(worker):
    job = {"caption": "lo-fi hip hop, rhodes", "lyrics": "[verse]\nla la", "audio_duration": 2.0, "steps": 4}
    result = worker.output(job | {"seed": 1})
    [output] = result["outputs"]
    assert output["duration_seconds"] == 2.0 and output["sample_rate"] == RATE and output["channels"] == 2
    assert len(_downloaded(output)) == 2 * RATE
    assert result["details"]["residency"] == "unload" and result["model"]["loaded_this_job"] is True


def test_lego_from_a_wav_stem_with_the_track_caption(worker):
    job = {"task": "lego", "audio": _stem(2.0, 44100, "WAV"), "track_type": "drums", "bpm": 120, "steps": 4}
    result = worker.output(job | {"key_scale": "F# minor", "seed": 2})
    assert result["details"]["caption_used"] == "live acoustic drum kit, tight kick and snare, brushed hi-hats"
    assert result["parameters"]["audio"] == "<provided>" and result["parameters"]["bpm"] == 120
    assert len(_downloaded(result["outputs"][0])) == 2 * RATE


def test_lego_from_an_mp3_stem_detects_the_duration(worker):
    job = {"task": "lego", "audio": _stem(3.0, 48000, "MP3", channels=2), "track_type": "vocals", "bpm": 90}
    result = worker.output(job | {"caption": "airy falsetto", "steps": 4, "seed": 3})
    details = result["details"]
    assert details["caption_used"] == "airy falsetto"  # the caller's caption replaces the default
    assert details["audio_duration_used"] == pytest.approx(3.0, abs=0.1)  # MP3 decoders pad a little
    assert result["outputs"][0]["duration_seconds"] == pytest.approx(details["audio_duration_used"], abs=0.05)


def test_partial_lego_and_a_batch_of_two(worker):
    job = {"task": "lego", "audio": _stem(2.0, 22050, "FLAC"), "track_type": "backing_vocals", "bpm": 100}
    job |= {"repainting_start": 0.5, "repainting_end": 1.5, "batch_size": 2, "steps": 4, "seed": 4}
    result = worker.output(job)
    assert [output["index"] for output in result["outputs"]] == [0, 1]
    first, second = (_downloaded(output) for output in result["outputs"])
    assert first.shape == second.shape == (2 * RATE, 2)
    assert not np.array_equal(first, second)  # two candidates, both uploaded
    assert len({output["s3_uri"] for output in result["outputs"]}) == 2


def test_source_audio_that_does_not_decode_is_refused_before_the_model_loads(worker):
    garbage = base64.b64encode(b"not audio at all" * 20).decode()
    error = worker.error({"task": "lego", "audio": garbage, "track_type": "drums", "bpm": 120})
    assert error.startswith("audio: audio does not decode")
    assert "loading tiny-random" not in worker.logs().split("audio does not decode")[-1]
    assert worker.output({"caption": "still here", "audio_duration": 1.0, "steps": 2})["outputs"]


def test_operator_locks_steps_and_allowed_tasks(start_worker, s3_server):
    locked = start_worker("ace_step", LOCKED_PARAMETERS='{"steps": 3}', ACE_STEP_TASKS="text2music", **s3_server.env())
    result = locked.output({"caption": "x", "audio_duration": 1.0, "steps": 40})
    assert result["parameters"]["steps"] == 3 and result["locked_parameters"] == {"steps": 3}
    error = locked.error({"task": "lego", "audio": _stem(1.0, 16000, "WAV"), "track_type": "drums", "bpm": 90})
    assert error == "task: 'lego' is disabled on this endpoint (allowed: text2music)"
