"""MusicGen (Meta) through transformers: text-to-music, and melody-conditioned with melody checkpoints.

Pieces longer than one model window (30 s) are generated window by window: each new window is
prompted with the last MUSICGEN_CONTEXT_SECONDS of audio so far, and only its new part is kept.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, ClassVar

import numpy as np
import torch
from pydantic import BeforeValidator, Field, StringConstraints
from transformers import (
    MusicgenForConditionalGeneration,
    MusicgenMelodyForConditionalGeneration,
    MusicgenMelodyProcessor,
    MusicgenProcessor,
)

from shared.adapter import ModelAdapter, Prediction, Progress
from shared.audio import Audio
from shared.errors import InputError, ModelFilesError
from shared.schemas import AudioSource, JobRequest

MAX_PROMPTS = 8
Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class MusicGenRequest(JobRequest):
    prompt: Annotated[list[Prompt], BeforeValidator(lambda value: [value] if isinstance(value, str) else value)] = (
        Field(
            min_length=1,
            max_length=MAX_PROMPTS,
            description=f"Text description of the music, or a list of up to {MAX_PROMPTS}: one output each, one batch.",
        )
    )
    duration: float = Field(8.0, ge=0.5, le=300.0, description="Length of each output in seconds.")
    guidance_scale: float = Field(
        3.0, ge=1.0, le=20.0, description="Classifier-free guidance: how closely to follow the prompt (1 = off)."
    )
    temperature: float = Field(1.0, gt=0.0, le=5.0, description="Sampling temperature.")
    top_k: int = Field(250, ge=0, le=2048, description="Sample among the k most likely tokens (0 = no limit).")
    top_p: float = Field(0.0, ge=0.0, le=1.0, description="Nucleus sampling mass (0 = off).")
    melody_audio: AudioSource | None = Field(
        None, description="Melody to follow (base64, https or s3:// URI); melody checkpoints only."
    )

    def output_count(self) -> int:
        return len(self.prompt)


def _seconds_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ModelFilesError(f"environment variable {name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ModelFilesError(f"environment variable {name} must be positive, got {value}")
    return value


class MusicGen(ModelAdapter[MusicGenRequest]):
    name = "musicgen"
    default_model_id = "facebook/musicgen-small"
    request_model = MusicGenRequest
    # Published repos ship preprocessor_config.json; transformers 5 saves processor_config.json.
    required_files = (
        "config.json",
        ("preprocessor_config.json", "processor_config.json"),
        "tokenizer.json",
        "tokenizer_config.json",
    )
    gpu_dtype: ClassVar[torch.dtype] = torch.float16

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
        self.window_frames = round(_seconds_from_env("MUSICGEN_WINDOW_SECONDS", 30.0) * self.frame_rate)
        self.context_frames = round(_seconds_from_env("MUSICGEN_CONTEXT_SECONDS", 10.0) * self.frame_rate)
        if self.context_frames >= self.window_frames:
            raise ModelFilesError("MUSICGEN_CONTEXT_SECONDS must be shorter than MUSICGEN_WINDOW_SECONDS")

    @property
    def input_sample_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    def predict(self, request: MusicGenRequest, audio_inputs: dict[str, Audio], progress: Progress) -> Prediction:
        melody = audio_inputs.get("melody_audio")
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
            pieces.append(self._generate_window(request, frames, context, melody))
            done += frames
            progress("generating", done / total_frames)
        waveforms = np.concatenate(pieces, axis=-1)  # (batch, channels, samples)
        return Prediction([Audio(np.ascontiguousarray(waveform.T), self.sample_rate) for waveform in waveforms])

    def _generate_window(
        self, request: MusicGenRequest, frames: int, context: np.ndarray | None, melody: Audio | None
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
            )
        prompt_samples = 0 if context is None else context.shape[-1]
        waveform = generated[..., prompt_samples : prompt_samples + frames * self.hop]
        return waveform.float().cpu().numpy()
