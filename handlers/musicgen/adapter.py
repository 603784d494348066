"""MusicGen (Meta) through transformers: text-to-music, and melody-conditioned with melody checkpoints.

Pieces longer than one model window (30 s) are generated window by window: each new window is
prompted with the last MUSICGEN_CONTEXT_SECONDS of audio so far, and only its new part is kept.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import ClassVar

import numpy as np
import torch
from transformers import (
    LogitsProcessorList,
    MusicgenForConditionalGeneration,
    MusicgenMelodyForConditionalGeneration,
    MusicgenMelodyProcessor,
    MusicgenProcessor,
)

from handlers.musicgen.catalog import CATALOG
from handlers.musicgen.config import MusicGenConfig
from handlers.musicgen.sampling import PerJobSampler, Sampling
from handlers.musicgen.schema import MusicGenRequest
from shared.adapter import BatchingAdapter, BatchItem, Prediction
from shared.audio import Audio
from shared.errors import InputError
from shared.schemas import AudioLabel
from shared.stop import BatchStop, JobCancelled

MELODY = AudioLabel("melody_audio")


class MusicGen(BatchingAdapter[MusicGenRequest, MusicGenConfig]):
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
        # Stereo checkpoints keep a mono EnCodec: the decoder's channels say how many streams it generates.
        self.channels = int(self.model.decoder.config.audio_channels)
        self.frame_rate = int(audio_config.frame_rate)
        self.hop = self.sample_rate // self.frame_rate
        # The codebook delay pattern spends this many steps before the last codebook's first frame.
        self.codebooks = int(self.model.decoder.config.num_codebooks)  # decoder rows per prompt
        self.delay_steps = self.codebooks // self.channels - 1
        self.window_frames = round(self.config.window_seconds * self.frame_rate)
        self.context_frames = round(self.config.context_seconds * self.frame_rate)

    @property
    def input_sample_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    @classmethod
    def batch_key(cls, request: MusicGenRequest) -> Hashable | None:
        """Text-only requests of one length and one sampling batch; a melody request runs alone."""
        if request.melody_audio is not None:
            return None
        return (request.duration, request.guidance_scale, request.temperature, request.top_k, request.top_p)

    def check_job(self, item: BatchItem) -> None:
        request, melody = item.request, item.audio_inputs.get(MELODY)
        if melody is not None and not self.is_melody:
            raise InputError(f"melody_audio: {self.model_id} is not a melody checkpoint; omit melody_audio")
        if self.is_melody and self._frames(request) > self.window_frames:
            raise InputError(
                f"duration: melody checkpoints generate one window, at most {self.window_frames / self.frame_rate:g} s"
            )

    def _frames(self, request: MusicGenRequest) -> int:
        return max(1, round(request.duration * self.frame_rate))

    def generate_batch(self, items: list[BatchItem]) -> list[Prediction | Exception]:
        """Jobs of one batch key, window by window: one row per prompt, each job sampled from its own seed."""
        request = items[0].request  # length and sampling are the batch key: the same for every job
        total_frames = self._frames(request)
        sampling = Sampling(request.guidance_scale, request.temperature, request.top_k, request.top_p)
        rows = [
            (len(item.request.prompt) * self.codebooks, torch.Generator(self.device).manual_seed(item.job.seed))
            for item in items
        ]
        prompts = [prompt for item in items for prompt in item.request.prompt]
        melodies = [item.audio_inputs.get(MELODY) for item in items for _ in item.request.prompt]
        stop = BatchStop([item.job.stop for item in items])
        pieces: list[np.ndarray] = []
        done = 0
        try:
            while done < total_frames:
                context = np.concatenate(pieces, axis=-1)[..., -self.context_frames * self.hop :] if pieces else None
                budget = self.window_frames - (self.context_frames if context is not None else 0)
                frames = min(budget, total_frames - done)
                window = self._generate_window(prompts, frames, context, melodies, PerJobSampler(sampling, rows), stop)
                pieces.append(window)
                done += frames
                for item in items:
                    item.job.progress("generating", done / total_frames)
        except JobCancelled:  # raised once every job of the batch is cancelled
            return [stop.cancelled[index] for index in range(len(items))]
        waveforms = iter(np.concatenate(pieces, axis=-1))  # (rows, channels, samples)
        songs = [
            Prediction([Audio(np.ascontiguousarray(next(waveforms).T), self.sample_rate) for _ in item.request.prompt])
            for item in items
        ]
        return [stop.cancelled.get(index, song) for index, song in enumerate(songs)]

    def _generate_window(
        self,
        prompts: list[str],
        frames: int,
        context: np.ndarray | None,
        melodies: list[Audio | None],
        sampler: PerJobSampler,
        stop: BatchStop,
    ) -> np.ndarray:
        processor_args: dict = {"text": prompts, "padding": True, "return_tensors": "pt"}
        if melodies[0] is not None:  # melody requests run alone: every row has the same melody
            melody = melodies[0]
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
                do_sample=False,  # the sampler below draws each token; generate takes its one choice
                temperature=None,
                top_k=None,
                top_p=None,
                guidance_scale=sampler.guidance_scale,
                logits_processor=LogitsProcessorList([sampler]),
                stopping_criteria=stop.stopping_criteria(),  # a cancelled job drops out at the next step
            )
        prompt_samples = 0 if context is None else context.shape[-1]
        waveform = generated[..., prompt_samples : prompt_samples + frames * self.hop]
        return waveform.float().cpu().numpy()
