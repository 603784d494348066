"""VoxCPM in process: a checkpoint with a missing tensor is refused; text normalization reaches the model."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from handlers.voxcpm.adapter import VoxCPM
from shared.pipeline import Worker
from shared.settings import Settings

pytestmark = pytest.mark.tiny


def test_a_checkpoint_missing_a_tensor_is_refused(tiny_volume, tmp_path: Path):
    folder = tmp_path / "voxcpm" / "org" / "broken"
    shutil.copytree(tiny_volume.ensure("voxcpm") / "voxcpm" / "tiny-random" / "VoxCPM2", folder)
    weights = load_file(folder / "model.safetensors")
    dropped = "feat_decoder.estimator.in_proj.weight"
    assert dropped in weights
    del weights[dropped]
    save_file(weights, folder / "model.safetensors")
    result = Worker(VoxCPM, Settings(volume_root=tmp_path, model_id="org/broken", output_dir=tmp_path)).run(
        {"id": "x", "input": {"target_text": "x"}}
    )
    assert result["error"].startswith(f"model folder {folder} is incomplete: 1 weight(s) missing")
    assert dropped in result["error"]
    assert result["error"].endswith(f"populate_volume.py voxcpm --model-id org/broken --volume {tmp_path}")


def test_normalized_text_is_what_is_spoken(tiny_volume, tmp_path: Path):
    settings = Settings(volume_root=tiny_volume.ensure("voxcpm"), model_id="tiny-random/VoxCPM2", output_dir=tmp_path)
    worker = Worker(VoxCPM, settings)
    text = "It costs $5 on 2024-01-02."
    plain = worker.run({"id": "p", "input": {"target_text": text, "seed": 3, "max_len": 20}})
    normalized = worker.run({"id": "n", "input": {"target_text": text, "normalize": True, "seed": 3, "max_len": 20}})
    assert plain["details"]["text_spoken"] == text
    spoken = normalized["details"]["text_spoken"]
    assert "$" not in spoken and "5" not in spoken and "dollar" in spoken.lower(), spoken


def test_text_that_tokenizes_to_nothing_or_overflows_the_model_is_refused(tiny_volume, tmp_path: Path):
    settings = Settings(volume_root=tiny_volume.ensure("voxcpm"), model_id="tiny-random/VoxCPM2", output_dir=tmp_path)
    worker = Worker(VoxCPM, settings)
    assert worker.run({"id": "z", "input": {"target_text": "\u0000"}}) == {
        "error": "target_text: nothing in it that this model can speak (it tokenizes to nothing)"
    }
    error = worker.run({"id": "l", "input": {"target_text": "word " * 1000, "max_len": 8192}})["error"]
    expected = r"target_text: 4000 text tokens and up to 8192 audio patches \(voice prompt: 0\) need 12193 positions; "
    assert re.match(expected + "this model holds 4096", error), error
