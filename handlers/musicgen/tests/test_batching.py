"""MusicGen's batches in process: a job the model refuses, and a batch call that fails as a whole."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from handlers.musicgen.adapter import MELODY, MusicGen
from handlers.musicgen.schema import MusicGenRequest
from shared.adapter import BatchItem, JobContext
from shared.audio import Audio
from shared.errors import InputError
from shared.memory import PhaseLog
from shared.pipeline import Worker
from shared.progress import Progress
from shared.settings import Settings
from shared.stop import StopSignal

pytestmark = pytest.mark.tiny


def _musicgen_worker(tiny_volume, tmp_path, **settings) -> Worker:
    volume = tiny_volume.ensure("musicgen")
    return Worker(
        MusicGen, Settings(volume_root=volume, model_id="tiny-random/musicgen", output_dir=tmp_path, **settings)
    )


def _run_together(worker: Worker, inputs: list[dict]) -> list[dict]:
    results: list[dict] = [{}] * len(inputs)

    def run(index: int) -> None:
        results[index] = worker.run({"id": f"job-{index}", "input": inputs[index]})

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_a_job_the_model_refuses_fails_alone_in_its_batch(tiny_volume, tmp_path):
    worker = _musicgen_worker(tiny_volume, tmp_path)
    with worker.cache.use() as (model, _):
        good, refused = (
            BatchItem(
                MusicGenRequest(**fields),
                audio,
                JobContext(seed, Progress({"id": "x"}), StopSignal(), PhaseLog(worker.runtime)),
            )
            for fields, audio, seed in (
                ({"prompt": "calm", "duration": 0.5}, {}, 1),
                ({"prompt": "calm", "duration": 0.5}, {MELODY: Audio(np.zeros((32000, 1)), 32000)}, 2),
            )
        )
        outcomes = model.predict_batch([refused, good])
    assert isinstance(outcomes[0], InputError) and "melody_audio" in str(outcomes[0])
    assert len(outcomes[1].outputs) == 1 and outcomes[1].outputs[0].frames == 16000


def test_a_batch_that_fails_as_a_whole_runs_again_job_by_job(tiny_volume, tmp_path, monkeypatch):
    generate_batch = MusicGen.generate_batch

    def fails_together(self, items):
        if len(items) > 1:
            raise RuntimeError("a shape this batch cannot take")
        return generate_batch(self, items)

    monkeypatch.setattr(MusicGen, "generate_batch", fails_together)
    worker = _musicgen_worker(tiny_volume, tmp_path, max_concurrency=2, batch_window_ms=2000)
    inputs = [{"prompt": "calm", "duration": 0.5, "seed": seed, "return_base64": True} for seed in (1, 2)]
    results = _run_together(worker, inputs)
    assert all("error" not in result and "batch" in result for result in results), results
    alone = [worker.run({"id": "alone", "input": job_input}) for job_input in inputs]
    assert [result["outputs"][0]["base64"] for result in results] == [one["outputs"][0]["base64"] for one in alone]


def test_one_bad_job_is_found_by_halving_its_batch_and_fails_alone(tiny_volume, tmp_path, monkeypatch):
    generate_batch = MusicGen.generate_batch
    sizes: list[int] = []

    def breaks_on_one_prompt(self, items):
        sizes.append(len(items))
        if any(item.request.prompt == ["break"] for item in items):
            raise RuntimeError("a prompt this model cannot take")
        return generate_batch(self, items)

    monkeypatch.setattr(MusicGen, "generate_batch", breaks_on_one_prompt)
    worker = _musicgen_worker(tiny_volume, tmp_path, max_concurrency=8, batch_window_ms=2000)
    prompts = ["calm", "bright", "break", "slow", "loud", "soft", "fast", "dark"]
    inputs = [{"prompt": prompt, "duration": 0.5, "seed": 1, "return_base64": True} for prompt in prompts]
    results = _run_together(worker, inputs)
    bad = prompts.index("break")
    assert results[bad] == {"error": "internal error (RuntimeError): a prompt this model cannot take"}
    assert all("outputs" in result for index, result in enumerate(results) if index != bad), results
    # The 8 fail together; then halves: 4 (fails) and 4, then 2 (fails) and 2, then the bad job and its
    # neighbour alone. Its 7 batch-mates ran in batches of 4, 2 and 1, not one by one.
    assert sorted(sizes) == [1, 1, 2, 2, 4, 4, 8]
