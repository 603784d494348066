"""The MusicGen worker end to end: real local RunPod API server over HTTP, real SeaweedFS S3."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import soundfile
from tests.conftest import ACCESS_KEY, REPO, SECRET_KEY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(start_worker, s3_server):
    return start_worker(**s3_server.env())


def _download(url: str):
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    samples, rate = soundfile.read(io.BytesIO(response.content), always_2d=True)
    return response, samples, rate


def test_job_uploads_to_s3_and_presigned_url_decodes(worker, s3_server):
    output = worker.output({"prompt": "warm piano", "duration": 1.5, "seed": 7, "format": "flac"})
    [item] = output["outputs"]
    assert item["s3_uri"].startswith(f"s3://{s3_server.bucket}/outputs/musicgen/")
    response, samples, rate = _download(item["url"])
    assert response.headers["Content-Type"] == "audio/flac"
    assert rate == 32000 == item["sample_rate"]
    assert samples.shape == (48000, 1)
    assert item["duration_seconds"] == 1.5 and item["channels"] == 1
    assert abs(samples).max() > 0  # real decoded waveform, not silence
    assert output["parameters"]["seed"] == 7 and output["parameters"]["duration"] == 1.5
    assert output["model"]["id"] == "tiny-random/musicgen"
    assert set(output["timings_s"]) >= {"validate", "load", "generate", "encode", "store", "total"}
    # The object really is in the bucket, readable with the worker's credentials.
    key = item["s3_uri"].split("/", 3)[3]
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)
    assert head["ContentLength"] == item["bytes"]


def test_presigned_url_is_signed(worker):
    output = worker.output({"prompt": "drums", "duration": 0.5, "seed": 1})
    url = output["outputs"][0]["url"]
    tampered = re.sub(r"X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=" + "0" * 64, url)
    assert requests.get(tampered, timeout=30).status_code == 403


def test_same_seed_same_audio_and_prompt_list_is_one_batch(worker):
    job = {"prompt": ["piano", "bass and drum"], "duration": 1.0, "seed": 3, "s3_prefix": "batches/run1"}
    first = worker.output(job)["outputs"]
    second = worker.output(job)["outputs"]
    assert [item["s3_uri"].rsplit("/", 1)[0] for item in first] == ["s3://audio-results/batches/run1/musicgen"] * 2
    decoded = [_download(item["url"])[1] for item in first + second]
    assert all(samples.shape == (32000, 1) for samples in decoded)
    assert (decoded[0] == decoded[2]).all() and (decoded[1] == decoded[3]).all()  # seeded: reproducible
    assert not (decoded[0] == decoded[1]).all()  # two prompts, two different outputs


def test_two_jobs_load_the_model_once(worker):
    worker.output({"prompt": "one", "duration": 0.5})
    second = worker.output({"prompt": "two", "duration": 0.5})
    assert second["model"]["loaded_this_job"] is False
    assert worker.logs().count("model loaded in") == 1


def test_exact_s3_key_and_inline_output(worker, s3_server):
    output = worker.output({"prompt": "x", "duration": 0.5, "format": "mp3", "s3_key": "custom/dir/take.mp3"})
    assert output["outputs"][0]["s3_uri"] == "s3://audio-results/custom/dir/take.mp3"
    inline = worker.output({"prompt": "x", "duration": 0.5, "format": "ogg", "return_base64": True})
    data = base64.b64decode(inline["outputs"][0]["base64"])
    samples, rate = soundfile.read(io.BytesIO(data), always_2d=True)
    assert rate == 32000 and abs(samples.shape[0] - 16000) <= 1


@pytest.mark.parametrize("audio_format", ["wav", "flac", "mp3", "ogg", "opus"])
def test_every_format_from_s3_decodes_to_the_requested_duration(worker, audio_format):
    output = worker.output({"prompt": "x", "duration": 1.0, "format": audio_format})["outputs"][0]
    response, samples, rate = _download(output["url"])
    assert response.headers["Content-Type"] == output["content_type"]
    assert rate == output["sample_rate"] and samples.shape[1] == output["channels"] == 1
    # Lossy codecs pad by a few milliseconds (encoder delay); the duration must still match to 20 ms.
    assert abs(samples.shape[0] / rate - 1.0) <= 0.02


def test_async_run_then_status(worker):
    job = requests.post(f"{worker.url}/run", json={"input": {"prompt": "x", "duration": 0.5}}, timeout=30).json()
    answer = requests.post(f"{worker.url}/status/{job['id']}", timeout=120).json()
    assert answer["status"] == "COMPLETED"
    assert answer["output"]["outputs"][0]["duration_seconds"] == 0.5


BAD_INPUTS = [
    ({"prompt": "x", "colour": "blue"}, ["colour: unknown field", "allowed fields:"]),
    ({"prompt": "x", "duration": "ten"}, ["duration: Input should be a valid number"]),
    ({"prompt": "x", "duration": 900}, ["duration: Input should be less than or equal to 300"]),
    ({"prompt": "x", "duration": 0.1}, ["duration: Input should be greater than or equal to 0.5"]),
    ({"prompt": "   "}, ["prompt", "at least 1 character"]),
    ({"prompt": []}, ["prompt", "at least 1 item"]),
    ({}, ["prompt: field required"]),
    ({"prompt": "x", "format": "aiff"}, ["format: Input should be 'wav', 'flac', 'mp3', 'ogg' or 'opus'"]),
    ({"prompt": "x", "top_k": True}, ["top_k: Input should be a valid integer"]),
    ({"prompt": "x", "melody_audio": "A" * 30_000_000}, ["melody_audio", "over the 20971520-byte cap"]),
    ({"prompt": "x", "melody_audio": "http://127.0.0.1:9/a.wav"}, ["melody_audio", "non-public address 127.0.0.1"]),
    ({"prompt": "x", "melody_audio": "https://169.254.169.254/latest"}, ["melody_audio", "non-public address"]),
    ({"prompt": "x", "s3_key": "../escape.wav"}, ["s3_key", "'..'"]),
    ({"prompt": "x", "s3_key": "/abs.wav"}, ["s3_key", "no leading '/'"]),
    ({"prompt": "x", "s3_key": "a.flac"}, ["s3_key ends in .flac but format is 'wav'"]),
    ({"prompt": ["a", "b"], "s3_key": "one.wav"}, ["s3_key: this job makes 2 outputs"]),
    ({"prompt": "x", "s3_bucket": "Bad_Bucket!"}, ["s3_bucket", "valid S3 bucket name"]),
    ({"prompt": "x", "return_base64": True, "s3_key": "k.wav"}, ["return_base64 and s3_bucket/s3_key/s3_prefix"]),
]


@pytest.mark.parametrize(("job_input", "expected"), BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_is_a_clear_error_and_worker_keeps_serving(worker, job_input, expected):
    error = worker.error(job_input)
    for fragment in expected:
        assert fragment in error
    assert worker.output({"prompt": "still here", "duration": 0.5})["outputs"]


def test_melody_on_a_non_melody_checkpoint_names_the_field(worker, tmp_path):
    buffer = io.BytesIO()
    soundfile.write(buffer, [[0.1]] * 32000, 32000, format="WAV")
    error = worker.error({"prompt": "x", "melody_audio": base64.b64encode(buffer.getvalue()).decode()})
    assert "melody_audio: tiny-random/musicgen is not a melody checkpoint" in error


def test_input_audio_that_does_not_decode(worker):
    error = worker.error({"prompt": "x", "melody_audio": base64.b64encode(b"not audio at all" * 10).decode()})
    assert error.startswith("melody_audio: audio does not decode")


def test_long_piece_is_generated_window_by_window(start_worker, s3_server):
    windowed = start_worker(MUSICGEN_WINDOW_SECONDS="1.0", MUSICGEN_CONTEXT_SECONDS="0.4", **s3_server.env())
    output = windowed.output({"prompt": "long", "duration": 2.5, "seed": 5})
    _, samples, rate = _download(output["outputs"][0]["url"])
    assert samples.shape == (80000, 1) and rate == 32000
    # 1 s, then 0.6 s of new audio per window: 1.0 + 0.6 + 0.6 + 0.3 = 2.5 s in four windows.
    assert windowed.logs().count("'stage': 'generating'") == 4


def test_missing_model_folder_names_path_and_command(start_worker, s3_server, tiny_volume):
    missing = start_worker(MODEL_ID="facebook/musicgen-small", **s3_server.env())
    error = missing.error({"prompt": "x"})
    assert f"model folder {tiny_volume}/musicgen/facebook/musicgen-small not found" in error
    assert "python scripts/populate_volume.py musicgen --model-id facebook/musicgen-small" in error
    assert missing.error({"prompt": "x"}) == error  # still serving, same answer


def test_wrong_s3_credentials_are_reported_without_the_secret(start_worker, s3_server):
    wrong_secret = "WRONG-secret-" + SECRET_KEY[::-1]
    bad = start_worker(**{**s3_server.env(), "BUCKET_SECRET_ACCESS_KEY": wrong_secret})
    answer = bad.runsync({"prompt": "x", "duration": 0.5})
    assert answer["status"] == "FAILED"
    assert "S3 refused the credentials" in answer["error"] and "BUCKET_SECRET_ACCESS_KEY" in answer["error"]
    logs = bad.logs()
    assert "S3 refused the credentials" in logs
    for secret in (wrong_secret, ACCESS_KEY):
        assert secret not in logs and secret not in str(answer)


def test_unreachable_s3_is_reported(start_worker, s3_server):
    from tests.conftest import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    down = start_worker(**{**s3_server.env(), "BUCKET_ENDPOINT_URL": endpoint})
    error = down.error({"prompt": "x", "duration": 0.5})
    assert f"S3 endpoint {endpoint} is unreachable" in error
    assert SECRET_KEY not in down.logs() and SECRET_KEY not in error


def test_inline_output_over_the_cap(start_worker):
    small_cap = start_worker(INLINE_OUTPUT_MAX_BYTES="20000")
    error = small_cap.error({"prompt": "x", "duration": 1.0, "return_base64": True})
    assert "return_base64: output is 64044 bytes, over the 20000-byte inline cap" in error
    assert "configure S3" in error
    # No bucket configured: the default is the local output folder.
    local = small_cap.output({"prompt": "x", "duration": 0.5})["outputs"][0]
    assert soundfile.info(local["path"]).frames == 16000


def test_one_shot_run_exits_by_the_job_outcome(tiny_volume, tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "RUNPOD_"))},
        "VOLUME_ROOT": str(tiny_volume),
        "MODEL_ID": "tiny-random/musicgen",
        "OUTPUT_DIR": str(tmp_path),
    }
    command = [sys.executable, "handlers/musicgen/handler.py", "--test_input"]
    good = subprocess.run([*command, '{"input": {"prompt": "x", "duration": 0.5}}'], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert Path(json.loads(good.stdout)["outputs"][0]["path"]).is_file()
    bad = subprocess.run([*command, '{"input": {"prompt": ""}}'], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert bad.returncode == 1 and "prompt.0: String should have at least 1 character" in bad.stdout
