"""DiffSinger on CUDA (the GPU tier: `make test-gpu` on a GPU machine): every graph on the CUDA provider,
GPU memory held while loaded and handed back when the sessions are dropped (MODEL_RESIDENCY=unload), and a
seed's noise (drawn inside the graphs, by CUDA's generator there) repeating whatever ran before."""

from __future__ import annotations

import numpy as np
import pytest

from handlers.diffsinger.adapter import DiffSinger
from handlers.diffsinger.tests.test_adapter import LYRICS, _sing
from shared.pipeline import Worker
from shared.settings import Residency, Settings

pytestmark = pytest.mark.gpu


def _worker(tiny_volume, tmp_path, residency: Residency) -> Worker:
    settings = Settings(
        volume_root=tiny_volume.ensure("diffsinger"),
        model_id="tiny-random-bank",
        output_dir=tmp_path,
        device="cuda",
        residency=residency,
    )
    return Worker(DiffSinger, settings)


def test_every_graph_runs_on_the_cuda_provider(tiny_volume, tmp_path):
    started = _worker(tiny_volume, tmp_path, Residency.KEEP)
    result = started.run({"id": "gpu", "input": LYRICS | {"seed": 1}})
    assert "error" not in result, result
    synthesizer = started.cache._model.synthesizer
    graphs = [synthesizer.acoustic, synthesizer.vocoder, synthesizer.dur, synthesizer.pitch, synthesizer.variance]
    assert all(graph.session.get_providers()[0] == "CUDAExecutionProvider" for graph in graphs)
    memory = result["memory_mib"]
    assert memory["kind"] == "cuda_allocated" and memory["peak"] >= memory["after_load"] > memory["before_job"]
    print(f"diffsinger: {memory}")


def test_unload_hands_gpu_memory_back(tiny_volume, tmp_path):
    started = _worker(tiny_volume, tmp_path, Residency.UNLOAD)
    started.run({"id": "warm", "input": LYRICS})  # the CUDA context and libraries: loaded once per process
    memory = started.run({"id": "gpu", "input": LYRICS})["memory_mib"]
    assert memory["after_load"] > memory["before_job"]
    assert memory["after_job"] - memory["before_job"] < 50, memory
    print(f"diffsinger unload: {memory}")


def test_a_seed_repeats_its_audio_on_cuda(tiny_volume, tmp_path):
    started = _worker(tiny_volume, tmp_path, Residency.KEEP)
    first, other, again = (_sing(started, LYRICS | {"seed": seed}) for seed in (1, 2, 1))
    assert np.array_equal(first, again) and not np.allclose(first, other)
