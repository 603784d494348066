"""MusicGen (Meta) through transformers: text-to-music, and melody-conditioned with melody checkpoints.

Pieces longer than one model window (30 s) are generated window by window: each new window is
prompted with the last MUSICGEN_CONTEXT_SECONDS of audio so far, and only its new part is kept.
"""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import torch
from transformers import (
    MusicgenForConditionalGeneration,
    MusicgenMelodyForConditionalGeneration,
    MusicgenMelodyProcessor,
    MusicgenProcessor,
)

from handlers.musicgen.catalog import CATALOG
from handlers.musicgen.config import MusicGenConfig
from handlers.musicgen.schema import MusicGenRequest
from shared.adapter import JobContext, ModelAdapter, Prediction
from shared.audio import Audio
from shared.errors import InputError
from shared.schemas import AudioLabel

MELODY = AudioLabel("melody_audio")


class MusicGen(ModelAdapter[MusicGenRequest, MusicGenConfig]):
    catalog = CATALOG
    request_model = MusicGenRequest
    config_model = MusicGenConfig
    gpu_dtype: ClassVar[str] = "float16"
    max_input_seconds: ClassVar[float] = 300.0  # a melody longer than the longest piece serves nothing

    def setup(self) -> None:
        config = json.loads((self.model_dir / "config.json").read_text())
        self.is_melody = config.get("model_type") == "musicgen_melody"
        model_class = MusicgenMelodyForConditionalGeneration if self.is_melody else MusicgenForConditionalGeneration
        processor_class = MusicgenMelodyProcessor if self.is_melody else MusicgenProcessor
        self.model = model_class.from_pretrained(self.model_dir, dtype=self.dtype).to(self.device).eval()
        self.processor = processor_class.from_pretrained(self.model_dir)
        audio_config = self.model.config.audio_encoder
        self.sample_rate = int(audio_config.sampling_rate)
        self.channels = int(audio_config.audio_channels)
        self.frame_rate = int(audio_config.frame_rate)
        self.hop = self.sample_rate // self.frame_rate
        # The codebook delay pattern spends this many steps before the last codebook's first frame.
        self.delay_steps = self.model.decoder.config.num_codebooks // self.channels - 1
        self.window_frames = round(self.config.window_seconds * self.frame_rate)
        self.context_frames = round(self.config.context_seconds * self.frame_rate)

    @property
    def input_sample_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    def predict(self, request: MusicGenRequest, audio_inputs: dict[AudioLabel, Audio], job: JobContext) -> Prediction:
        melody = audio_inputs.get(MELODY)
        if melody is not None and not self.is_melody:
            raise InputError(f"melody_audio: {self.model_id} is not a melody checkpoint; omit melody_audio")
        total_frames = max(1, round(request.duration * self.frame_rate))
        if self.is_melody and total_frames > self.window_frames:
            raise InputError(
                f"duration: melody checkpoints generate one window, at most {self.window_frames / self.frame_rate:g} s"
            )
        pieces: list[np.ndarray] = []
        done = 0
        while done < total_frames:
            context = np.concatenate(pieces, axis=-1)[..., -self.context_frames * self.hop :] if pieces else None
            budget = self.window_frames - (self.context_frames if context is not None else 0)
            frames = min(budget, total_frames - done)
            pieces.append(self._generate_window(request, frames, context, melody, job))
            done += frames
            job.progress("generating", done / total_frames)
        waveforms = np.concatenate(pieces, axis=-1)  # (batch, channels, samples)
        return Prediction([Audio(np.ascontiguousarray(waveform.T), self.sample_rate) for waveform in waveforms])

    def _generate_window(
        self, request: MusicGenRequest, frames: int, context: np.ndarray | None, melody: Audio | None, job: JobContext
    ) -> np.ndarray:
        prompts = request.prompt
        processor_args: dict = {"text": prompts, "padding": True, "return_tensors": "pt"}
        if melody is not None:
            processor_args |= {"audio": [melody.samples[:, 0]] * len(prompts), "sampling_rate": melody.sample_rate}
        elif context is not None:
            # A continuation is prompted with the audio so far; EnCodec re-encodes it into codes.
            processor_args |= {"audio": list(context.mean(axis=1)) if self.channels == 1 else list(context)}
            processor_args["sampling_rate"] = self.sample_rate
        inputs = self.processor(**processor_args).to(self.device)
        for name in ("input_values", "input_features"):
            if name in inputs:
                inputs[name] = inputs[name].to(self.dtype)
        with torch.inference_mode():
            generated = self.model.generate(
                **inputs,
                max_new_tokens=frames + self.delay_steps,
                do_sample=True,
                guidance_scale=request.guidance_scale,
                temperature=request.temperature,
                top_k=request.top_k,
                top_p=request.top_p if request.top_p > 0 else None,
                stopping_criteria=job.stop.stopping_criteria(),  # a cancelled job ends at the next step
            )
        prompt_samples = 0 if context is None else context.shape[-1]
        waveform = generated[..., prompt_samples : prompt_samples + frames * self.hop]
        return waveform.float().cpu().numpy()
