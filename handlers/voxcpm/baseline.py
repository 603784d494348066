"""VoxCPM without the worker: the package's own `VoxCPM.generate`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import voxcpm

from shared.testing import Baseline

TEXT = "Streaming speech from a RunPod worker, one patch after another, until the sentence ends."
PATCHES = 40  # the bench model's stop head never fires (fixtures.py): max_len sets the length


def load(folder: Path):
    tts = voxcpm.VoxCPM(str(folder), zipenhancer_model_path=None, optimize=False, device="cpu")
    return tts.tts_model, tts


def run(loaded, seed: int) -> np.ndarray:
    _, tts = loaded
    torch.manual_seed(seed)
    return tts.generate(text=TEXT, cfg_value=2.0, inference_timesteps=10, max_len=PATCHES, retry_badcase=False)


BASELINE = Baseline({"target_text": TEXT, "max_len": PATCHES, "retry_badcase": False}, load, run)
