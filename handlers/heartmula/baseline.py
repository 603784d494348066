"""HeartMuLa without the worker: heartlib's own steps (preprocess, frame generation, detokenize).

`HeartMuLaGenPipeline.__call__` would also write a file with torchaudio; the worker's job ends in audio
handed to the pipeline, so the comparison stops at the waveform. The RoPE caches are rebuilt after loading,
as transformers 5 requires of any heartlib caller.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from heartlib import HeartMuLaGenPipeline

from handlers.heartmula import flavors
from shared.testing import Baseline

TAGS, LYRICS = "piano,happy", "[Verse]\nThe sun creeps in across the floor\n\n[Chorus]\nEvery day the light returns"
FRAMES, CFG_SCALE = 40, 1.5  # 3.2 s of song, with guidance (two batch rows)


def load(folder: Path) -> HeartMuLaGenPipeline:
    flavors.register()
    pipeline = HeartMuLaGenPipeline.from_pretrained(
        str(folder), device=torch.device("cpu"), dtype=torch.float32, version="3B"
    )
    for module in pipeline.mula.modules():
        if hasattr(module, "rope_init"):
            module.rope_init()
    return pipeline


def run(pipeline: HeartMuLaGenPipeline, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    inputs = pipeline.preprocess({"tags": TAGS, "lyrics": LYRICS}, cfg_scale=CFG_SCALE)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # heartlib autocasts on CPU in float32, which torch declines with a warning
        frames = pipeline._forward(
            inputs, max_audio_length_ms=(FRAMES - 1) * 80, temperature=1.0, topk=50, cfg_scale=CFG_SCALE
        )["frames"]
    return pipeline.codec.detokenize(frames)


BASELINE = Baseline({"tags": TAGS, "lyrics": LYRICS, "max_duration_ms": FRAMES * 80, "cfg_scale": CFG_SCALE}, load, run)
