"""VoxCPM in process: a checkpoint with a missing tensor is refused; the streamed items stay small."""

from __future__ import annotations

import shutil
from pathlib import Path

from handlers.voxcpm.voxcpm_tts import VoxCPM
from safetensors.torch import load_file, save_file

from shared.pipeline import Worker
from shared.settings import Settings


def test_a_checkpoint_missing_a_tensor_is_refused(tiny_volume: Path, tmp_path: Path):
    folder = tmp_path / "voxcpm" / "org" / "broken"
    shutil.copytree(tiny_volume / "voxcpm" / "tiny-random" / "VoxCPM2", folder)
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


def test_streamed_items_are_well_under_a_megabyte(tiny_volume: Path, tmp_path: Path):
    settings = Settings(volume_root=tiny_volume, model_id="tiny-random/VoxCPM2", output_dir=tmp_path)
    items: list[dict] = []
    job = {"target_text": "A longer sentence to stream in pieces.", "stream": True, "max_len": 64, "seed": 3}
    result = Worker(VoxCPM, settings).run({"id": "s", "input": job}, items.append)
    assert "outputs" in result and items
    assert max(len(item["audio_base64"]) for item in items) < 800_000
    assert sum(item["frames"] for item in items) == round(result["outputs"][0]["duration_seconds"] * 48000)


def test_normalized_text_is_spoken(tiny_volume: Path, tmp_path: Path):
    settings = Settings(volume_root=tiny_volume, model_id="tiny-random/VoxCPM2", output_dir=tmp_path)
    job = {"target_text": "It costs $5 on 2024-01-02.", "normalize": True, "seed": 3}
    result = Worker(VoxCPM, settings).run({"id": "n", "input": job})
    assert "error" not in result, result
    assert result["parameters"]["normalize"] is True and result["outputs"][0]["duration_seconds"] > 0
