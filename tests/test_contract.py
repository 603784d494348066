"""The contract every worker keeps, run for each worker found in handlers/*/ (as diffusers' tester mixin is).

A worker declares what the suite needs in its fixtures.py (CONTRACT); nothing here names a model.
Integration: the worker's process behind the real local RunPod API server, outputs read back from SeaweedFS.
Tiny: the same worker in process, for what needs a hand on its insides (locks, start-up, faults).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from shared import workers
from shared.pipeline import Worker
from shared.serving import StartupFailure, start_worker
from shared.settings import Residency, Settings
from shared.testing import ContractCase
from tests.support import download, job_result

WORKERS = workers.worker_names()
# Every tiny model of every worker (a worker's variants: checkpoints of other shapes or kinds) is served.
SERVED = [
    (worker, tiny.model_id)
    for worker in WORKERS
    for tiny in workers.module(worker, "fixtures").TINY_MODELS
    if tiny.serves_contract
]


def contract(worker: str) -> ContractCase:
    return workers.module(worker, "fixtures").CONTRACT


@pytest.fixture(scope="module", params=SERVED, ids=[f"{worker}:{model_id}" for worker, model_id in SERVED])
def served(request, start_worker, s3_server):
    worker, model_id = request.param
    handle = start_worker(worker, MODEL_ID=model_id, **s3_server.env(), **contract(worker).extra_env)
    yield worker, handle
    handle.stop()


def _job(worker: str, **extra: Any) -> dict[str, Any]:
    return contract(worker).job_input | extra


@pytest.mark.integration
def test_outputs_decode_from_s3_as_reported(served, s3_server):
    worker, handle = served
    result = handle.result(_job(worker, seed=1, format="flac"))
    outputs = result["outputs"]
    assert [output["index"] for output in outputs] == list(range(contract(worker).output_count))
    for output in outputs:
        assert output["s3_uri"].startswith(f"s3://{s3_server.bucket}/outputs/{worker}/")
        response, samples, rate = download(output["url"])
        assert response.headers["Content-Type"] == output["content_type"] == "audio/flac"
        assert (rate, samples.shape[1]) == (output["sample_rate"], output["channels"])
        assert samples.shape[0] == round(output["duration_seconds"] * rate) > 0
        key = output["s3_uri"].split("/", 3)[3]
        assert s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)["ContentLength"] == output["bytes"]
    assert result["parameters"]["seed"] == 1 and result["model"]["name"] == worker
    stages = {"validate", "fetch_input", "wait", "load", "generate", "encode", "store", "total"}
    assert set(result["timings_s"]) == stages


@pytest.mark.integration
def test_seeded_jobs_are_reproducible(served):
    worker, handle = served
    first, second = (handle.result(_job(worker, seed=7)) for _ in range(2))
    decoded = [[download(output["url"])[1] for output in result["outputs"]] for result in (first, second)]
    assert len(decoded[0]) == contract(worker).output_count
    for one, other in zip(*decoded, strict=True):
        assert one.shape == other.shape and (one == other).all()


@pytest.mark.integration
def test_an_unknown_field_then_a_good_job(served):
    worker, handle = served
    error = handle.error(_job(worker, colour="blue"))
    assert "colour: unknown field" in error and "allowed fields:" in error
    assert handle.result(_job(worker))["outputs"]


@pytest.mark.integration
def test_a_bad_value_then_a_good_job(served):
    worker, handle = served
    field, value, fragment = contract(worker).bad_value
    assert fragment in handle.error(_job(worker, **{field: value}))
    assert handle.result(_job(worker))["outputs"]


@pytest.mark.integration
def test_async_run_then_status(served):
    worker, handle = served
    job = requests.post(f"{handle.url}/run", json={"input": _job(worker)}, timeout=30).json()
    answer = requests.post(f"{handle.url}/status/{job['id']}", timeout=120).json()
    assert answer["status"] == "COMPLETED"
    assert len(job_result(answer["output"])["outputs"]) == contract(worker).output_count


@pytest.fixture
def worker_env(monkeypatch, tiny_volume, tmp_path):
    """Environment of a worker started in process: the tiny volume, and nothing of the caller's."""

    def prepare(worker: str, **env: str) -> None:
        for name in ("MODEL_DIR", "MODEL_RESIDENCY", "LOCKED_PARAMETERS", "BUCKET_NAME", "BUCKET_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        values = {
            "VOLUME_ROOT": str(tiny_volume.ensure(worker)),
            "MODEL_ID": tiny_volume.model_id(worker),
            "OUTPUT_DIR": str(tmp_path / "outputs"),
            **contract(worker).extra_env,
            **env,
        }
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return prepare


@pytest.mark.tiny
@pytest.mark.parametrize("worker", WORKERS)
def test_locked_parameters_override_the_request(worker_env, worker):
    locked = contract(worker).locked
    worker_env(worker, LOCKED_PARAMETERS=json.dumps(locked))
    started = start_worker(workers.adapter_class(worker))
    assert isinstance(started, Worker)
    # The schema tools read (the page's form, the docs) is the one the worker validates with.
    assert started.adapter_class.request_model is workers.request_model(worker)
    result = started.run({"id": "locked", "input": _job(worker, seed=3)})
    assert "error" not in result, result
    assert result["locked_parameters"] == locked
    assert {name: result["parameters"][name] for name in locked} == locked


@pytest.mark.tiny
@pytest.mark.parametrize("worker", WORKERS)
def test_a_bad_variable_is_the_answer_of_every_job(worker_env, worker):
    variable, value, fragment = contract(worker).bad_variable
    worker_env(worker, **{variable: value})
    started = start_worker(workers.adapter_class(worker))
    assert isinstance(started, StartupFailure)
    first, second = (started.run({"id": str(n), "input": _job(worker)}) for n in range(2))
    assert first == second and fragment in first["error"] and set(first) == {"error"}


@pytest.mark.tiny
@pytest.mark.parametrize("worker", WORKERS)
@pytest.mark.parametrize("residency", [Residency.KEEP, Residency.UNLOAD])
def test_a_missing_model_folder_is_known_at_start_up(worker_env, worker, residency):
    worker_env(worker, MODEL_ID="org/absent", MODEL_RESIDENCY=residency.value)
    started = start_worker(workers.adapter_class(worker))
    assert isinstance(started, StartupFailure)
    assert f"/{workers.catalog(worker).models_root()}/org/absent not found" in started.error
    assert f"python scripts/populate_volume.py {worker} --model-id org/absent" in started.error


def _out_of_memory(runtime: str) -> tuple[Exception, str]:
    """Running out of GPU memory as the worker's runtime reports it, and how the error names it."""
    if runtime == "onnxruntime":
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail

        return Fail("[ONNXRuntimeError] : 1 : FAIL : CUDA failure 2: out of memory ; GPU=0"), "Fail: [ONNXRuntimeError]"
    import torch

    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "OutOfMemoryError: CUDA out of"


@pytest.mark.tiny
@pytest.mark.parametrize("worker", WORKERS)
def test_a_gpu_fault_frees_the_model_and_asks_for_a_new_worker(worker_env, monkeypatch, worker):
    worker_env(worker, MODEL_RESIDENCY="keep")
    started = start_worker(workers.adapter_class(worker))
    assert isinstance(started, Worker) and started.cache.is_loaded

    exception, named = _out_of_memory(workers.adapter_class(worker).runtime)

    def fault(*args, **kwargs):
        raise exception

    monkeypatch.setattr(started.cache._model, "predict", fault)
    result = started.run({"id": "oom", "input": _job(worker)})
    assert result["refresh_worker"] is True
    assert result["error"].startswith(f"GPU fault ({named}")
    assert not started.cache.is_loaded  # dropped with its memory, not kept half-broken
    assert "outputs" in started.run({"id": "after", "input": _job(worker)})  # a fresh load serves again


@pytest.mark.tiny
@pytest.mark.parametrize("worker", WORKERS)
def test_other_failures_keep_the_model_and_the_worker(worker_env, worker):
    worker_env(worker, MODEL_RESIDENCY="keep")
    started = start_worker(workers.adapter_class(worker))
    adapter = started.cache._model

    def broken(*args, **kwargs):
        raise ValueError("shape mismatch")

    adapter.predict = broken  # on the instance: the class's method is back once it is deleted
    assert started.run({"id": "x", "input": _job(worker)}) == {"error": "internal error (ValueError): shape mismatch"}
    del adapter.predict
    assert started.cache._model is adapter
    assert "outputs" in started.run({"id": "y", "input": _job(worker)})


@pytest.mark.tiny
@pytest.mark.parametrize("worker", WORKERS)
def test_unknown_locked_parameters_stop_the_worker_at_start_up(worker_env, worker):
    worker_env(worker, LOCKED_PARAMETERS='{"no_such_field": 1}')
    started = start_worker(workers.adapter_class(worker))
    assert isinstance(started, StartupFailure)
    assert started.error.startswith(f"LOCKED_PARAMETERS: no_such_field is not a field of {worker} requests")


@pytest.mark.tiny
@pytest.mark.parametrize("worker", WORKERS)
@pytest.mark.parametrize("residency", [Residency.OFFLOAD, Residency.SEQUENTIAL])
def test_residency_is_accepted_only_where_supported(worker_env, worker, residency):
    worker_env(worker, MODEL_RESIDENCY=residency.value, DEVICE="cpu")
    adapter = workers.adapter_class(worker)
    started = start_worker(adapter)
    if residency in adapter.residencies:
        assert isinstance(started, Worker) and started.residency is residency
    else:
        assert isinstance(started, StartupFailure)
        supported = " or ".join(each.value for each in adapter.residencies)
        assert started.error == f"MODEL_RESIDENCY={residency.value}: {worker} does not support it; use {supported}"


@pytest.mark.tiny
@pytest.mark.parametrize("worker", WORKERS)
def test_settings_objects_work_without_the_environment(tiny_volume, tmp_path, worker):
    """Tests and tools build workers from explicit settings too; the model's variables keep their defaults."""
    settings = Settings(
        volume_root=tiny_volume.ensure(worker), model_id=tiny_volume.model_id(worker), output_dir=tmp_path
    )
    result = Worker(workers.adapter_class(worker), settings).run({"id": "s", "input": _job(worker, seed=2)})
    assert len(result["outputs"]) == contract(worker).output_count
