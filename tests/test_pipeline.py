"""The shared pipeline's parts on their own: model cache, streamed items, result shape, offline mode."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Annotated

import numpy as np
import pytest

from shared import workers
from shared.audio import Audio
from shared.model_cache import ModelCache
from shared.progress import AudioStream
from shared.results import first_output_aliases, parameters_used
from shared.schemas import AudioSource, BulkyInput, JobRequest, parse_request
from shared.settings import Mp3Settings, Residency
from shared.torch_runtime import RUNTIME as TORCH
from tests.support import REPO


@pytest.mark.unit
def test_concurrent_jobs_share_one_load():
    loads = []
    barrier = threading.Barrier(8)

    def load():
        loads.append(object())
        return loads[-1]

    cache = ModelCache(load, Residency.KEEP, TORCH)
    seen = []

    def job():
        barrier.wait()
        with cache.use() as (model, _):
            seen.append(model)

    threads = [threading.Thread(target=job) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.load_count == 1 and len(loads) == 1
    assert all(model is loads[0] for model in seen)


@pytest.mark.unit
def test_unload_residency_drops_the_model_when_the_last_job_leaves():
    cache = ModelCache(object, Residency.UNLOAD, TORCH)
    with cache.use() as (first, info), cache.use() as (second, _):
        assert info.loaded_now and first is second
        assert cache.is_loaded
    assert not cache.is_loaded
    with cache.use() as (_, info):
        assert info.loaded_now
    assert cache.load_count == 2


@pytest.mark.unit
def test_a_failed_load_is_not_cached():
    attempts = []

    def load():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("volume not mounted yet")
        return "model"

    cache = ModelCache(load, Residency.KEEP, TORCH)
    with pytest.raises(OSError), cache.use():
        pass
    with cache.use() as (model, info):
        assert model == "model" and info.loaded_now


@pytest.mark.unit
def test_streamed_audio_is_split_into_items_under_the_limit():
    items: list[dict] = []
    AudioStream(items.append, Mp3Settings()).write(Audio(np.zeros((480_000, 2), np.float32), 48_000), "pcm_s16le")
    assert [item["frames"] for item in items] == [131_072, 131_072, 131_072, 86_784]  # 512 KiB of PCM each
    assert [item["chunk"] for item in items] == [0, 1, 2, 3]
    assert max(len(item["audio_base64"]) for item in items) < 700_000  # RunPod takes up to 1 MB per item


class _TwoVoices(JobRequest):
    voice: AudioSource
    extra: list[AudioSource] = []
    latents: Annotated[str, BulkyInput()] | None = None


@pytest.mark.unit
def test_input_audio_is_not_echoed_and_first_output_aliases():
    raw = {"voice": "QUJD", "extra": ["QUJD", "https://example.com/a.wav"], "latents": "QUJD" * 1000}
    used = parameters_used(parse_request(_TwoVoices, raw, 10_000), seed=5)
    assert used["voice"] == "<provided>" and used["extra"] == ["<provided>", "<provided>"] and used["seed"] == 5
    assert used["latents"] == "<provided>"
    outputs = [{"path": "/tmp/a.wav", "sample_rate": 24000}]
    aliases = {"audio_url": ("url", "path"), "sample_rate": ("sample_rate",)}
    assert first_output_aliases(outputs, aliases) == {"audio_url": "/tmp/a.wav", "sample_rate": 24000}
    assert first_output_aliases([], aliases) == {}


@pytest.mark.tiny
def test_model_libraries_are_offline_before_they_are_imported():
    """Importing any worker sets the offline variables before transformers or huggingface_hub reads them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    imports = "; ".join(f"import handlers.{worker}.adapter" for worker in workers.worker_names())
    check = f"{imports}; from huggingface_hub import constants as hub; print(hub.HF_HUB_OFFLINE, hub.is_offline_mode())"
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["True", "True"]


@pytest.mark.tiny
def test_a_gpu_fault_on_a_streaming_deployment_asks_the_sdk_to_stop_the_worker(tiny_volume, tmp_path, monkeypatch):
    """The SDK reads refresh_worker only from plain handlers; the streaming handler sets it for the worker."""
    import asyncio

    import torch

    from shared.pipeline import Worker
    from shared.serving import streaming_job_handler
    from shared.settings import Settings

    worker = next(w for w in workers.worker_names() if workers.adapter_class(w).streams)
    settings = Settings(
        volume_root=tiny_volume.ensure(worker), model_id=tiny_volume.model_id(worker), output_dir=tmp_path
    )
    started = Worker(workers.adapter_class(worker), settings)
    started.start()

    def fault(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(started.cache._model, "predict", fault)
    config: dict = {}
    handler = streaming_job_handler(started, lambda: config.update(refresh_worker=True))
    job_input = workers.module(worker, "fixtures").CONTRACT.job_input

    async def items() -> list[dict]:
        return [item async for item in handler({"id": "oom", "input": job_input})]

    [result] = asyncio.run(items())
    assert result["error"].startswith("GPU fault (OutOfMemoryError") and "refresh_worker" not in result
    assert config == {"refresh_worker": True}


@pytest.mark.tiny
def test_bytecode_is_written_for_what_a_worker_imports(tmp_path):
    """Into a cache folder of its own: unchecked-hash bytecode beside the sources would hide later edits."""
    worker = workers.worker_names()[0]
    env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "shared.bytecode", f"handlers.{worker}.adapter"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[3]) > 500  # torch, transformers, ... as imported, not site-packages whole
    adapter = (workers.HANDLERS / worker / "adapter.py").resolve()
    assert list((tmp_path / adapter.parent.relative_to("/")).glob("adapter.*.pyc"))  # although imports write none


@pytest.mark.unit
def test_progress_logs_every_new_stage_and_every_percent():
    from loguru import logger

    from shared.progress import Progress

    logged: list[str] = []
    sink = logger.add(
        lambda message: logged.append(message.record["message"]), filter=lambda r: "progress" in r["message"]
    )
    try:
        progress = Progress({"id": "p"})
        for frame in range(1, 1001):  # a per-frame caller
            progress("generating", frame / 1000)
        progress("decoding", 0.0)
        progress("decoding", 1.0)
    finally:
        logger.remove(sink)
    assert 90 <= len(logged) - 2 <= 100  # about one line per percent, not one per frame
    assert logged[0] == "progress: {'stage': 'generating', 'progress': 0.001}"
    assert logged[-3:] == [
        "progress: {'stage': 'generating', 'progress': 1.0}",
        "progress: {'stage': 'decoding', 'progress': 0.0}",
        "progress: {'stage': 'decoding', 'progress': 1.0}",
    ]
