"""ACE-Step 1.5 without the worker: diffusers' `AceStepPipeline.__call__`."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AceStepPipeline

from shared.testing import Baseline

CAPTION, SECONDS, STEPS = "lo-fi hip hop, warm rhodes", 4.0, 8


def load(folder: Path):
    pipe = AceStepPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe.transformer, pipe


def run(loaded, seed: int) -> torch.Tensor:
    _, pipe = loaded
    torch.manual_seed(seed)
    with torch.inference_mode():
        return pipe(prompt=[CAPTION], lyrics=[""], audio_duration=SECONDS, num_inference_steps=STEPS).audios


BASELINE = Baseline({"caption": CAPTION, "audio_duration": SECONDS, "steps": STEPS}, load, run)
