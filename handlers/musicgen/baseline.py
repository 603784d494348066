"""MusicGen without the worker: processor, `generate`, decode, as the transformers docs call them."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import MusicgenForConditionalGeneration, MusicgenProcessor

from shared.testing import Baseline

PROMPT, SECONDS = "lofi piano beat with warm bass", 2.0


def load(folder: Path):
    model = MusicgenForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    return model, MusicgenProcessor.from_pretrained(folder)


def run(loaded, seed: int) -> torch.Tensor:
    model, processor = loaded
    audio_config = model.config.audio_encoder
    frames = round(SECONDS * audio_config.frame_rate)
    delay = model.decoder.config.num_codebooks // audio_config.audio_channels - 1
    inputs = processor(text=[PROMPT], padding=True, return_tensors="pt")
    torch.manual_seed(seed)
    with torch.inference_mode():
        waveform = model.generate(
            **inputs, max_new_tokens=frames + delay, do_sample=True, guidance_scale=3.0, top_k=250, temperature=1.0
        )
    return waveform[..., : frames * (audio_config.sampling_rate // audio_config.frame_rate)].float().cpu()


BASELINE = Baseline({"prompt": PROMPT, "duration": SECONDS}, load, run)
