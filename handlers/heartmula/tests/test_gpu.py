"""HeartMuLa on CUDA (the GPU tier: `make test-gpu` on a GPU machine): the sequential plan puts each model on
the GPU only for its phase, and with the published sizes (random weights) idle and peak GPU memory of
`keep` and `sequential` are measured side by side."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from handlers.heartmula.adapter import HeartMuLaSong
from handlers.heartmula.fixtures import build_heartmula
from shared.pipeline import Worker
from shared.settings import Residency, Settings

pytestmark = pytest.mark.gpu
JOB = {"tags": "piano,happy", "lyrics": "[Verse]\nla la la", "cfg_scale": 1.5, "seed": 1}


def _worker(volume: Path, model_id: str, tmp_path: Path, residency: Residency) -> Worker:
    settings = Settings(volume_root=volume, model_id=model_id, output_dir=tmp_path, device="cuda", residency=residency)
    worker = Worker(HeartMuLaSong, settings)
    worker.start()
    return worker


def _devices(module: torch.nn.Module) -> set[str]:
    return {parameter.device.type for parameter in module.parameters()}


def test_sequential_moves_each_model_to_the_gpu_for_its_phase_only(tiny_volume, tmp_path):
    worker = _worker(tiny_volume.ensure("heartmula"), "tiny-random/heartmula", tmp_path, Residency.SEQUENTIAL)
    with worker.cache.use() as (adapter, _):
        mula, codec = adapter.parts["heartmula"], adapter.parts["heartcodec"]
    assert _devices(mula) == _devices(codec) == {"cpu"}  # between jobs: both in CPU memory
    seen: dict[str, tuple[set[str], set[str]]] = {}
    hooks = [
        mula.backbone.register_forward_pre_hook(
            lambda *_: seen.setdefault("generate", (_devices(mula), _devices(codec)))
        ),
        codec.flow_matching.estimator.register_forward_pre_hook(
            lambda *_: seen.setdefault("decode", (_devices(mula), _devices(codec)))
        ),
    ]
    result = worker.run({"id": "s", "input": JOB | {"max_duration_ms": 800}})
    for hook in hooks:
        hook.remove()
    assert "error" not in result, result
    assert seen == {"generate": ({"cuda"}, {"cpu"}), "decode": ({"cpu"}, {"cuda"})}
    assert _devices(mula) == _devices(codec) == {"cpu"}
    # Nothing of the models left on the GPU (cuBLAS keeps its workspace, a few MiB, through the allocator).
    assert result["memory_mib"]["after_job"] < 64, result["memory_mib"]
    assert next(mula.parameters()).dtype == torch.bfloat16 and next(codec.parameters()).dtype == torch.float32


@pytest.fixture(scope="module")
def full_size_volume(tmp_path_factory) -> Path:
    volume = tmp_path_factory.mktemp("full-volume")
    build_heartmula(volume / "heartmula" / "full-random" / "heartmula", "full")
    return volume


@pytest.mark.parametrize("residency", [Residency.KEEP, Residency.SEQUENTIAL])
def test_full_size_gpu_memory_idle_and_peak(full_size_volume, tmp_path, residency):
    worker = _worker(full_size_volume, "full-random/heartmula", tmp_path, residency)
    idle = torch.cuda.memory_allocated() / 2**20
    result = worker.run({"id": "f", "input": JOB | {"max_duration_ms": 10_000}})
    assert "error" not in result, result
    memory = result["memory_mib"]
    phases = {f"{phase['phase']}:{phase.get('part', '')}": phase["after_mib"] for phase in memory["phases"]}
    print(f"full size, {residency.value}: idle {idle:.0f} MiB, peak {memory['peak']:.0f} MiB, phases {phases}")
    if residency is Residency.SEQUENTIAL:
        assert idle < 64 and memory["after_job"] < 64
    else:
        assert idle > 6000  # HeartMuLa alone is ~7 GB in bfloat16
