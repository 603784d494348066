"""A worker process as RunPod meets it: start-up failures, S3 faults, destinations, the one-shot run.

These are the shared library's behaviours, so one worker stands for all: the first whose contract job
makes one output (any would do; none is named here).
"""

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

from shared import workers
from shared.schemas import BulkyInput, marked_fields
from tests.support import ACCESS_KEY, REPO, SECRET_KEY, free_port, job_result

pytestmark = pytest.mark.integration

VEHICLE = next(w for w in workers.worker_names() if workers.module(w, "fixtures").CONTRACT.output_count == 1)
JOB = workers.module(VEHICLE, "fixtures").CONTRACT.job_input


@pytest.fixture(scope="module")
def worker(start_worker, s3_server):
    handle = start_worker(VEHICLE, MODEL_RESIDENCY="keep", **s3_server.env())
    yield handle
    handle.stop()


def test_a_bad_variable_answers_every_job_instead_of_crashing(start_worker):
    broken = start_worker(VEHICLE, INLINE_OUTPUT_MAX_BYTES="lots")
    first, second = broken.error(JOB), broken.error(JOB)
    assert first == second
    assert first.startswith("environment variable INLINE_OUTPUT_MAX_BYTES: Input should be a valid integer")
    assert broken.process.poll() is None and "start-up failed; every job will answer" in broken.logs()
    broken.stop()


def test_a_missing_model_folder_is_reported_at_start_up_even_when_unloading(start_worker, tiny_volume):
    missing = start_worker(VEHICLE, MODEL_ID="org/absent", MODEL_RESIDENCY="unload")
    assert "start-up failed" in missing.logs()  # before any job came
    error = missing.error(JOB)
    assert f"model folder {tiny_volume.root}/{workers.catalog(VEHICLE).models_root()}/org/absent not found" in error
    assert f"python scripts/populate_volume.py {VEHICLE} --model-id org/absent" in error
    assert missing.error(JOB) == error
    missing.stop()


def test_two_jobs_load_the_model_once(worker):
    first = worker.result(JOB)
    second = worker.result(JOB)
    assert first["model"]["loaded_this_job"] is False  # loaded at start-up
    assert second["model"]["loaded_this_job"] is False
    assert worker.logs().count("model loaded in") == 1


def test_presigned_url_is_signed(worker):
    url = worker.result(JOB)["outputs"][0]["url"]
    tampered = re.sub(r"X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=" + "0" * 64, url)
    assert requests.get(tampered, timeout=30).status_code == 403
    assert requests.get(url, timeout=30).status_code == 200


def test_exact_key_prefix_and_inline_output(worker, s3_server):
    exact = worker.result(JOB | {"format": "mp3", "s3_key": "custom/dir/take.mp3"})["outputs"][0]
    assert exact["s3_uri"] == f"s3://{s3_server.bucket}/custom/dir/take.mp3"
    prefixed = worker.result(JOB | {"s3_prefix": "runs/7"})["outputs"][0]
    assert prefixed["s3_uri"].startswith(f"s3://{s3_server.bucket}/runs/7/{VEHICLE}/")
    inline = worker.result(JOB | {"format": "ogg", "return_base64": True})["outputs"][0]
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(inline["base64"])), always_2d=True)
    assert rate == inline["sample_rate"] and abs(samples.shape[0] / rate - inline["duration_seconds"]) < 0.03
    assert "url" not in inline and "s3_uri" not in inline


def test_wrong_s3_credentials_are_reported_without_the_secret(start_worker, s3_server):
    wrong_secret = "WRONG-secret-" + SECRET_KEY[::-1]
    bad = start_worker(VEHICLE, **{**s3_server.env(), "BUCKET_SECRET_ACCESS_KEY": wrong_secret})
    error = bad.error(JOB)
    assert "S3 refused the credentials" in error and "BUCKET_SECRET_ACCESS_KEY" in error
    logs = bad.logs()
    assert "S3 refused the credentials" in logs
    for secret in (wrong_secret, ACCESS_KEY):
        assert secret not in logs and secret not in error
    bad.stop()


def test_unreachable_s3_is_reported(start_worker, s3_server):
    endpoint = f"http://127.0.0.1:{free_port()}"
    down = start_worker(VEHICLE, **{**s3_server.env(), "BUCKET_ENDPOINT_URL": endpoint})
    error = down.error(JOB)
    assert f"S3 endpoint {endpoint} is unreachable" in error
    assert SECRET_KEY not in down.logs() and SECRET_KEY not in error
    down.stop()


def test_inline_output_over_the_cap_and_the_local_folder_default(start_worker):
    small_cap = start_worker(VEHICLE, INLINE_OUTPUT_MAX_BYTES="100")
    error = small_cap.error(JOB | {"return_base64": True})
    assert re.search(r"return_base64: output is \d+ bytes, over the 100-byte inline cap", error)
    assert "configure S3" in error
    local = small_cap.result(JOB)["outputs"][0]  # no bucket configured: the local output folder
    assert not Path(local["path"]).is_absolute()  # the server's own paths stay out of results
    assert soundfile.info(small_cap.output_file(local["path"])).frames > 0
    small_cap.stop()


def test_a_result_over_the_payload_limit_fails_with_the_reason(start_worker):
    capped = start_worker(VEHICLE, RESULT_MAX_BYTES="10000", INLINE_OUTPUT_MAX_BYTES="4000000")
    error = capped.error(JOB | {"return_base64": True})
    assert re.match(r"result: \d+ bytes, over RESULT_MAX_BYTES=10000 \(RunPod drops larger results\)", error), error
    assert capped.result(JOB)["outputs"]  # a small result still goes through
    capped.stop()


def test_one_shot_run_exits_by_the_job_outcome(tiny_volume, tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "RUNPOD_"))},
        "VOLUME_ROOT": str(tiny_volume.ensure(VEHICLE)),
        "MODEL_ID": tiny_volume.model_id(VEHICLE),
        "OUTPUT_DIR": str(tmp_path),
    }
    command = [sys.executable, "-m", f"handlers.{VEHICLE}", "--test_input"]
    good = subprocess.run([*command, json.dumps({"input": JOB})], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert (tmp_path / job_result(json.loads(good.stdout))["outputs"][0]["path"]).is_file()
    bad = subprocess.run([*command, '{"input": {"no_such_field": 1}}'], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 1 and "no_such_field: unknown field" in bad.stdout
    # Without --test_input, the worker runs its own test_input.json.
    default = subprocess.run([sys.executable, "-m", f"handlers.{VEHICLE}"], env=env | {"PYTHONPATH": str(REPO)},
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert default.returncode == 0, default.stderr
    expected = json.loads((REPO / "handlers" / VEHICLE / "test_input.json").read_text())["input"]
    echoed = job_result(json.loads(default.stdout))["parameters"]
    bulky = marked_fields(workers.adapter_class(VEHICLE).request_model, BulkyInput)  # echoed as "<provided>"
    assert all(echoed[k] == ("<provided>" if k in bulky else v) for k, v in expected.items())
