"""VoxCPM in process: a checkpoint with a missing tensor is refused; text normalization reaches the model;
no mode needs the packages the image leaves out."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from handlers.voxcpm.adapter import VoxCPM
from shared.pipeline import Worker
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[3]
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


def test_every_mode_runs_without_librosas_signal_stack(tiny_volume, tmp_path: Path):
    """The image leaves out numba, scipy and scikit-learn (librosa goes in alone, for voxcpm's import):
    zero-shot, a voice prompt, its latents and normalization must not reach them."""
    script = f"""
import sys
from handlers.voxcpm.adapter import VoxCPM
from handlers.voxcpm.tests.test_schema import prompt_wav
from shared.pipeline import Worker
from shared.settings import Settings

settings = Settings(volume_root={str(tiny_volume.ensure("voxcpm"))!r}, model_id="tiny-random/VoxCPM2",
                    output_dir={str(tmp_path)!r})
worker = Worker(VoxCPM, settings)
jobs = [
    {{"target_text": "It costs $5.", "normalize": True, "max_len": 8}},
    {{"target_text": "Same voice.", "prompt_audio": prompt_wav(), "prompt_text": "a hum", "max_len": 8}},
    {{"task": "encode_latents", "prompt_audio": prompt_wav()}},
]
for number, job_input in enumerate(jobs):
    assert "error" not in worker.run({{"id": str(number), "input": job_input}})
print(sorted(m for m in sys.modules if m.split(".")[0] in ("numba", "llvmlite", "scipy", "sklearn")
             or (m.startswith("librosa.") and m != "librosa.version")))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
