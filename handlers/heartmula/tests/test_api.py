"""The HeartMuLa worker end to end: the real local RunPod API server over HTTP, songs uploaded to SeaweedFS."""

from __future__ import annotations

import io

import pytest
import requests
import soundfile

pytestmark = pytest.mark.integration
LYRICS = "[Verse]\nThe sun creeps in across the floor\n\n[Chorus]\nEvery day the light returns"
SAMPLES_PER_FRAME = 48000 * 80 // 1000  # 12.5 frames/s at 48 kHz


@pytest.fixture(scope="module")
def worker(start_worker, s3_server):
    handle = start_worker("heartmula", HEARTMULA_MAX_DURATION_MS="60000", **s3_server.env())
    yield handle
    handle.stop()


def _song(worker, job_input: dict) -> tuple[dict, int]:
    """The result, and the uploaded song's length in samples (checked stereo 48 kHz)."""
    result = worker.output(job_input)
    assert "error" not in result, result
    response = requests.get(result["outputs"][0]["url"], timeout=30)
    assert response.status_code == 200
    samples, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == 48000 and samples.ndim == 2 and samples.shape[1] == 2
    assert result["outputs"][0]["s3_uri"].startswith("s3://audio-results/outputs/heartmula/")
    return result, len(samples)


@pytest.mark.parametrize(
    "job_input",
    [
        {"lyrics": LYRICS, "tags": "piano,happy", "cfg_scale": 1.5},
        {"tags": "ambient,synthesizer", "cfg_scale": 1.0},
        {"lyrics": LYRICS, "cfg_scale": 3.0, "temperature": 0.8, "topk": 20},
    ],
)
def test_songs_are_frames_at_12_5_per_second(worker, job_input):
    result, length = _song(worker, {**job_input, "max_duration_ms": 1200, "seed": 2})
    details = result["details"]
    assert details["planned_frames"] == 15 and details["ended_by"] in ("eos", "max_duration")
    assert length == details["frames"] * SAMPLES_PER_FRAME
    assert [phase["phase"] for phase in result["memory_mib"]["phases"]] == [
        "place",
        "generate",
        "place",
        "decode",
        "cleanup",
    ]


def test_a_song_over_one_decode_window_is_decoded_in_several(worker):
    result, length = _song(worker, {"tags": "rock", "max_duration_ms": 400 * 80, "seed": 3, "cfg_scale": 1.0})
    assert result["details"]["frames"] > 372, "the tiny model ended early: pick another seed"
    assert result["details"]["decode_windows"] >= 2
    assert length == result["details"]["frames"] * SAMPLES_PER_FRAME


@pytest.mark.parametrize(
    ("bad_input", "error"),
    [
        ({"lyrics": " ", "tags": ""}, "lyrics and tags: both are empty; give lyrics, tags or both"),
        ({"tags": "pop", "max_duration_ms": 120_000}, "max_duration_ms: 120000 is over this endpoint's cap"),
        ({"tags": "pop", "melody": "x"}, "melody: unknown field"),
        ({"tags": "pop", "cfg_scale": 0}, "cfg_scale: Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_input_is_refused_and_the_next_job_runs(worker, bad_input, error):
    assert error in worker.error(bad_input)
    _song(worker, {"tags": "pop", "max_duration_ms": 400})
