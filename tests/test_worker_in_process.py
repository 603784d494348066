"""The model cache and the pipeline's fault contract, in process, with the real tiny MusicGen."""

from __future__ import annotations

import base64
import io
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from handlers.musicgen.musicgen import MusicGen

from shared.audio import Audio
from shared.model_cache import ModelCache
from shared.pipeline import Worker, _ProgressReporter
from shared.settings import Mp3Settings, Residency, Settings

JOB = {"id": "job-1", "input": {"prompt": "lofi beat", "duration": 0.5, "seed": 1}}


def _worker(tiny_volume: Path, tmp_path: Path, residency: Residency = Residency.KEEP) -> Worker:
    settings = Settings(
        volume_root=tiny_volume, model_id="tiny-random/musicgen", output_dir=tmp_path, residency=residency
    )
    return Worker(MusicGen, settings)


def test_concurrent_jobs_share_one_load():
    loads = []
    barrier = threading.Barrier(8)

    def load():
        loads.append(object())
        return loads[-1]

    cache = ModelCache(load, Residency.KEEP)
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


def test_unload_residency_drops_the_model_when_the_last_job_leaves():
    cache = ModelCache(object, Residency.UNLOAD)
    with cache.use() as (first, info), cache.use() as (second, _):
        assert info.loaded_now and first is second
        assert cache.is_loaded
    assert not cache.is_loaded
    with cache.use() as (_, info):
        assert info.loaded_now
    assert cache.load_count == 2


def test_a_failed_load_is_not_cached():
    attempts = []

    def load():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("volume not mounted yet")
        return "model"

    cache = ModelCache(load, Residency.KEEP)
    with pytest.raises(OSError), cache.use():
        pass
    with cache.use() as (model, info):
        assert model == "model" and info.loaded_now


def test_job_writes_to_local_folder_and_reports_parameters(tiny_volume, tmp_path):
    worker = _worker(tiny_volume, tmp_path)
    result = worker.run(JOB)
    assert "error" not in result, result
    output = result["outputs"][0]
    assert Path(output["path"]).is_file() and Path(output["path"]) == tmp_path / "musicgen" / "job-1-0.wav"
    assert result["parameters"]["seed"] == 1 and result["parameters"]["prompt"] == ["lofi beat"]
    assert set(result["timings_s"]) == {"validate", "fetch_input", "load", "generate", "encode", "store", "total"}
    assert worker.run(JOB)["model"]["loaded_this_job"] is False


def test_unload_after_job_frees_the_model(tiny_volume, tmp_path):
    worker = _worker(tiny_volume, tmp_path, Residency.UNLOAD)
    assert worker.run(JOB)["model"]["loaded_this_job"] is True
    assert not worker.cache.is_loaded
    assert worker.run(JOB)["model"]["loaded_this_job"] is True
    assert worker.cache.load_count == 2


@pytest.mark.parametrize(
    "fault",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: an illegal memory access was encountered"),
    ],
    ids=["out-of-memory", "illegal-access"],
)
def test_gpu_fault_frees_the_model_and_asks_for_a_new_worker(tiny_volume, tmp_path, monkeypatch, fault):
    worker = _worker(tiny_volume, tmp_path)
    worker.run(JOB)
    adapter = worker.cache._model
    monkeypatch.setattr(adapter.model, "generate", lambda **_: (_ for _ in ()).throw(fault))
    result = worker.run(JOB)
    assert result["refresh_worker"] is True
    assert result["error"].startswith(f"GPU fault ({type(fault).__name__}: ")
    assert "the worker will be replaced, retry the job" in result["error"]
    assert not worker.cache.is_loaded  # dropped with its memory, not kept half-broken


def test_other_failures_keep_the_worker(tiny_volume, tmp_path, monkeypatch):
    worker = _worker(tiny_volume, tmp_path)
    worker.run(JOB)
    adapter = worker.cache._model
    original = adapter.model.generate
    monkeypatch.setattr(adapter.model, "generate", lambda **_: (_ for _ in ()).throw(ValueError("shape mismatch")))
    result = worker.run(JOB)
    assert result == {"error": "internal error (ValueError): shape mismatch"}
    monkeypatch.setattr(adapter.model, "generate", original)
    assert "outputs" in worker.run(JOB)


def _tone_base64(frequency: float, seconds: float = 2.0, rate: int = 44100) -> str:
    times = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * frequency * times), rate, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


def _melody_job(melody: str | None, **extra) -> dict:
    job_input = {"prompt": ["calm", "busy"], "duration": 1.0, "seed": 5, "return_base64": True, **extra}
    if melody is not None:
        job_input["melody_audio"] = melody
    return {"id": "melody", "input": job_input}


def _decoded(result: dict) -> list[np.ndarray]:
    assert "error" not in result, result
    return [soundfile.read(io.BytesIO(base64.b64decode(o["base64"])))[0] for o in result["outputs"]]


def test_melody_checkpoint_follows_the_melody_audio(tiny_volume, tmp_path):
    settings = Settings(volume_root=tiny_volume, model_id="tiny-random/musicgen-melody", output_dir=tmp_path)
    worker = Worker(MusicGen, settings)
    a440 = _decoded(worker.run(_melody_job(_tone_base64(440.0))))
    assert [len(samples) for samples in a440] == [32000, 32000]  # 44.1 kHz input, 32 kHz out
    assert np.array_equal(a440[0], _decoded(worker.run(_melody_job(_tone_base64(440.0))))[0])  # seeded
    # Same seed and prompts, another melody: the chromagram conditions the decoder, so the audio changes.
    assert not np.array_equal(a440[0], _decoded(worker.run(_melody_job(_tone_base64(262.0))))[0])
    assert len(_decoded(worker.run(_melody_job(None)))) == 2  # melody checkpoints also take text alone
    too_long = worker.run(_melody_job(_tone_base64(440.0), duration=31.0))
    assert too_long == {"error": "duration: melody checkpoints generate one window, at most 30 s"}


def test_streamed_audio_is_split_into_items_under_the_limit():
    items: list[dict] = []
    reporter = _ProgressReporter({"id": "j"}, items.append, Mp3Settings())
    reporter.chunk(Audio(np.zeros((480_000, 2), np.float32), 48_000), "pcm_s16le")  # 10 s stereo: 1.9 MB
    assert [item["frames"] for item in items] == [131_072, 131_072, 131_072, 86_784]  # 512 KiB of PCM each
    assert [item["chunk"] for item in items] == [0, 1, 2, 3]
    assert max(len(item["audio_base64"]) for item in items) < 700_000  # RunPod takes up to 1 MB per item
