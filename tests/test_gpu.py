"""The GPU tier: every torch worker's tiny model on CUDA in its GPU dtype, offload, memory handed back, a real
OOM (a worker on another runtime has its own GPU tests in its folder).

Run with `make test-gpu` on a machine with CUDA (skipped elsewhere). Figures go to the log and the note.
"""

from __future__ import annotations

import pytest
import torch

from shared import workers
from shared.pipeline import Worker
from shared.settings import Residency, Settings

pytestmark = pytest.mark.gpu

WORKERS = [w for w in workers.worker_names() if workers.adapter_class(w).runtime == "torch"]


def _worker(tiny_volume, tmp_path, worker: str, residency: Residency) -> Worker:
    settings = Settings(
        volume_root=tiny_volume.ensure(worker),
        model_id=tiny_volume.model_id(worker),
        output_dir=tmp_path,
        device="cuda",
        residency=residency,
    )
    return Worker(workers.adapter_class(worker), settings)


def _job(worker: str, **extra) -> dict:
    return {"id": "gpu", "input": workers.module(worker, "fixtures").CONTRACT.job_input | {"seed": 1} | extra}


@pytest.mark.parametrize("worker", WORKERS)
def test_tiny_model_runs_on_cuda_in_its_gpu_dtype(tiny_volume, tmp_path, worker):
    started = _worker(tiny_volume, tmp_path, worker, Residency.KEEP)
    result = started.run(_job(worker))
    assert "error" not in result, result
    adapter = started.cache._model
    assert adapter.device.type == "cuda" and adapter.dtype == getattr(torch, adapter.gpu_dtype)
    memory = result["memory_mib"]
    assert memory["kind"] == "cuda_allocated" and memory["peak"] >= memory["after_load"] > 0
    print(f"{worker}: {memory}")


@pytest.mark.parametrize("worker", WORKERS)
def test_unload_hands_gpu_memory_back(tiny_volume, tmp_path, worker):
    started = _worker(tiny_volume, tmp_path, worker, Residency.UNLOAD)
    started.run(_job(worker))  # one-time allocations (cuBLAS workspaces, kernels) out of the way
    memory = started.run(_job(worker))["memory_mib"]
    assert memory["after_load"] > memory["before_job"]
    assert memory["after_job"] - memory["before_job"] < 50, memory
    assert torch.cuda.memory_reserved() / 2**20 - memory["after_job"] < 50  # the cache was emptied too
    print(f"{worker}: {memory}")


@pytest.mark.parametrize("worker", WORKERS)
def test_cpu_offload_keeps_weights_off_the_gpu_between_jobs(tiny_volume, tmp_path, worker):
    if Residency.OFFLOAD not in workers.adapter_class(worker).residencies:
        pytest.skip(f"{worker} does not offer CPU offload")
    offloaded = _worker(tiny_volume, tmp_path, worker, Residency.OFFLOAD)
    result = offloaded.run(_job(worker))
    assert "error" not in result, result
    kept = _worker(tiny_volume, tmp_path, worker, Residency.KEEP)
    kept_memory = kept.run(_job(worker))["memory_mib"]
    assert result["memory_mib"]["after_job"] < kept_memory["after_job"], (result["memory_mib"], kept_memory)
    print(f"{worker}: offload {result['memory_mib']} keep {kept_memory}")


@pytest.mark.parametrize("worker", WORKERS)
def test_a_real_out_of_memory_asks_for_a_new_worker(tiny_volume, tmp_path, monkeypatch, worker):
    started = _worker(tiny_volume, tmp_path, worker, Residency.KEEP)
    started.start()
    adapter = started.cache._model
    original = adapter.predict

    def too_much(*args, **kwargs):
        torch.empty(2**45, dtype=torch.uint8, device="cuda")  # 32 TiB: the allocator refuses
        return original(*args, **kwargs)

    monkeypatch.setattr(adapter, "predict", too_much)
    result = started.run(_job(worker))
    assert result["refresh_worker"] is True and result["error"].startswith("GPU fault (OutOfMemoryError")
    assert not started.cache.is_loaded


def test_this_gpu_host_is_accepted_for_what_it_is():
    from shared.cuda import choose_device, host_facts
    from shared.torch_runtime import RUNTIME

    facts = host_facts(RUNTIME)
    assert facts.gpus and facts.library.sees_gpu and facts.driver
    assert int(facts.driver.split(".")[0]) >= 580
    assert choose_device("auto", facts) == choose_device("cuda", facts) == "cuda"
    print(f"host: {facts}")


@pytest.mark.parametrize("worker", WORKERS)
def test_concurrent_jobs_on_cuda_equal_the_same_jobs_alone(tiny_volume, tmp_path, worker):
    """Batched (MusicGen, ACE-Step) or one at a time (the rest), each job's audio as when alone. In float32:
    in half precision another batch size may round a logit differently and so, rarely, change a token."""
    import base64
    import io
    import threading

    import numpy as np
    import soundfile

    settings = Settings(
        volume_root=tiny_volume.ensure(worker),
        model_id=tiny_volume.model_id(worker),
        output_dir=tmp_path,
        device="cuda",
        dtype="float32",
        residency=Residency.KEEP,
        max_concurrency=4,
        batch_window_ms=2000,
    )
    started = Worker(workers.adapter_class(worker), settings)
    jobs = [_job(worker, seed=seed, return_base64=True) | {"id": f"gpu-{seed}"} for seed in (1, 2, 3, 4)]
    alone = [started.run(job) for job in jobs]
    together: list[dict] = [{}] * len(jobs)
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, started.run(jobs[i]))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    def audio(result: dict) -> list:
        assert "error" not in result, result
        return [soundfile.read(io.BytesIO(base64.b64decode(o["base64"])))[0] for o in result["outputs"]]

    for one, other in zip(alone, together, strict=True):
        for single, batched in zip(audio(one), audio(other), strict=True):
            assert single.shape == batched.shape and np.abs(single - batched).max() <= 2 / 32768
    print(f"{worker}: batches {[result.get('batch') for result in together]}")
