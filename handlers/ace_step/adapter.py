"""ACE-Step 1.5 through diffusers' AceStepPipeline: text-to-music, "lego" stem layering, repaint, cover,
extract and complete, on the base, SFT and turbo checkpoints, 2B or XL (5B), for songs up to 10 minutes.

Lego: a source stem (vocals, a drum loop...) goes in, a new track is generated to sit over it. The
checkpoint's variant (read from its transformer config) sets the defaults: turbo is guidance-distilled
(8 steps, no guidance), base and SFT run 50 steps with guidance. The VAE decodes in tiles of ~20 s, so
GPU memory does not grow with the song's length. The worker's default residency is `unload` (the
reference plan shares one 16 GB GPU between models).
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import AceStepPipeline

from handlers.ace_step.catalog import CATALOG
from handlers.ace_step.config import AceStepConfig
from handlers.ace_step.schema import SAMPLE_RATE, TRACK_CAPTIONS, AceStepRequest
from shared.adapter import BatchingAdapter, BatchItem, Prediction
from shared.audio import Audio
from shared.errors import InputError
from shared.fetch import fetch_verified
from shared.schemas import AudioLabel, JobRequest
from shared.settings import Residency, Settings
from shared.stop import BatchStop, JobCancelled

SOURCE = AudioLabel("audio")
LORA_MAX_BYTES = 4 * 1024**3
# Defaults per variant (ACE-Step 1.5's): turbo is guidance-distilled and made for 8 steps.
STEPS = {"turbo": 8, "base": 50, "sft": 50}
GUIDANCE = {"turbo": 1.0, "base": 7.0, "sft": 7.0}
# Request fields that may differ between the jobs of one batch: the candidates, the output options and the
# seed. Not the caption or lyrics: the pipeline pads them to the longest in its batch and encodes them without
# a mask, so a padded caption changes its song (measured on the tiny model: up to 0.002 apart).
_PER_JOB_FIELDS = {"batch_size"} | set(JobRequest.model_fields)


def checkpoint_variant(transformer_config: Any) -> str:
    """turbo, base or sft, as the checkpoint's transformer config says (diffusers reads the same fields)."""
    version = getattr(transformer_config, "model_version", None)
    if version in STEPS:
        return version
    return "turbo" if getattr(transformer_config, "is_turbo", False) else "base"


def is_xl(transformer_config: Any) -> bool:
    """XL: a DiT wider than its condition encoder (2560 over 2048), which the transformer projects up."""
    width = getattr(transformer_config, "encoder_hidden_size", None)
    return width is not None and width != transformer_config.hidden_size


def fetch_lora(config: AceStepConfig, settings: Settings) -> Path | None:
    """The LoRA named by ACE_STEP_LORA_URI, fetched once into a local cache and checked by SHA-256."""
    if config.lora_uri is None:
        return None
    cache_file = config.lora_cache_dir / config.lora_name() / "pytorch_lora_weights.safetensors"
    return fetch_verified(
        config.lora_uri, "ACE_STEP_LORA_URI", config.lora_sha256, cache_file, settings, LORA_MAX_BYTES
    )


def decode_tiles(latent_frames: int, vae: Any) -> int:
    """Tiles the VAE decodes `latent_frames` in (AutoencoderOobleck's tiled decode), 1 when it decodes whole."""
    if not vae.use_tiling or latent_frames <= vae.tile_latent_min_length:
        return 1
    return math.ceil(latent_frames / (vae.tile_latent_min_length - 2 * vae.tile_latent_overlap))


class AceStep(BatchingAdapter[AceStepRequest, AceStepConfig]):
    catalog = CATALOG
    request_model = AceStepRequest
    config_model = AceStepConfig
    gpu_dtype: ClassVar[str] = "bfloat16"
    input_channels: ClassVar[int] = 2
    default_residency: ClassVar[Residency] = Residency.UNLOAD
    residencies: ClassVar[tuple[Residency, ...]] = (Residency.KEEP, Residency.UNLOAD, Residency.OFFLOAD)

    @classmethod
    def check_request(cls, request: AceStepRequest, config: AceStepConfig) -> None:
        if request.task not in config.tasks:
            raise InputError(
                f"task: {request.task!r} is disabled on this endpoint (allowed: {', '.join(config.tasks)})"
            )

    @classmethod
    def prepare(cls, model_dir: Path, config: AceStepConfig, settings: Settings) -> None:
        fetch_lora(config, settings)  # a wrong checksum or an unreachable LoRA is known before any job

    def setup(self) -> None:
        self.pipe = AceStepPipeline.from_pretrained(self.model_dir, dtype=self.dtype)
        lora = fetch_lora(self.config, self.settings)
        self.lora = None
        if lora is not None:
            # Fused into the transformer's weights, then its adapter layers dropped: inference runs at the
            # base model's speed. A LoRA that matches none of the transformer's layers is refused.
            self.pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="operator")
            self.pipe.fuse_lora(lora_scale=self.config.lora_scale)
            self.pipe.unload_lora_weights()
            self.lora = {"id": self.config.lora_name(), "scale": self.config.lora_scale}
        if self.residency is Residency.OFFLOAD and self.device.type == "cuda":
            self.pipe.enable_model_cpu_offload(device=self.device)  # weights wait in CPU memory
        else:
            self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        # Long songs: the VAE encodes and decodes in tiles along time, and a batch one candidate at a time.
        self.pipe.vae.enable_tiling()
        self.pipe.vae.enable_slicing()
        self.variant = checkpoint_variant(self.pipe.transformer.config)
        self.xl = is_xl(self.pipe.transformer.config)

    @property
    def input_sample_rate(self) -> int:
        return SAMPLE_RATE

    @classmethod
    def batch_key(cls, request: AceStepRequest) -> Hashable | None:
        """text2music requests that differ only in their seed and candidates share one pipeline call (takes of
        one song, from several callers or one)."""
        if request.task != "text2music":
            return None
        return json.dumps(request.model_dump(mode="json", exclude=_PER_JOB_FIELDS), sort_keys=True)

    def _duration(self, request: AceStepRequest, source: Audio | None) -> float:
        return request.audio_duration or (source.duration if source is not None else 30.0)

    def check_job(self, item: BatchItem) -> None:
        request, source = item.request, item.audio_inputs.get(SOURCE)
        if request.task == "cover" and self.pipe.audio_tokenizer is None:
            raise InputError(
                f"task: 'cover' needs audio_tokenizer/ and audio_token_detokenizer/ in {self.model_dir}, "
                "which this checkpoint lacks"
            )
        duration = self._duration(request, source)
        if request.repainting_end is not None and request.repainting_end > duration:
            raise InputError(
                f"repainting_end: {request.repainting_end:g} s is past the end of the audio ({duration:g} s)"
            )
        if self.variant == "turbo" and (request.guidance_scale or 1.0) > 1.0:
            raise InputError(
                f"guidance_scale: {request.guidance_scale:g} on a turbo checkpoint, which is guidance-distilled; "
                "leave it unset or 1"
            )

    def generate_batch(self, items: list[BatchItem]) -> list[Prediction | Exception]:
        """Jobs of one batch key in one pipeline call: each job's candidates drawn from its own generator."""
        request, source = items[0].request, items[0].audio_inputs.get(SOURCE)  # the rest match (batch key)
        duration = self._duration(request, source)
        captions = [item.request.caption or TRACK_CAPTIONS.get(item.request.track_type or "", "") for item in items]
        steps = request.steps or STEPS[self.variant]
        guidance_scale = request.guidance_scale or GUIDANCE[self.variant]
        candidates = sum(item.request.batch_size for item in items)
        tiles = decode_tiles(math.ceil(duration * self.pipe.latents_per_second), self.pipe.vae)
        stop = BatchStop([item.job.stop for item in items])
        decoded = 0

        def report_step(pipe, step: int, timestep, tensors: dict) -> dict:
            for item in items:
                item.job.progress("denoising", (step + 1) / steps)
            stop.step()  # a cancelled job drops out here, between two diffusion steps
            return {}

        def report_tile(_module, _args) -> None:
            nonlocal decoded
            stop.step()  # and here, between two decoding tiles
            for item in items:
                item.job.progress("decoding", decoded / (tiles * candidates))
            decoded += 1

        texts = [
            (caption, item.request.lyrics)
            for item, caption in zip(items, captions, strict=True)
            for _ in range(item.request.batch_size)
        ]
        # One generator per job, drawn once per candidate in order: the same noise alone or in any batch.
        generators = []
        for item in items:
            generator = torch.Generator(self.device).manual_seed(item.job.seed)
            generators += [generator] * item.request.batch_size
        arguments: dict[str, Any] = {
            "prompt": [caption for caption, _ in texts],
            "lyrics": [lyrics for _, lyrics in texts],
            "generator": generators,
            "audio_duration": duration,
            "num_inference_steps": steps,
            "guidance_scale": guidance_scale,
            "task_type": request.task,
            "track_name": request.track_type,
            "complete_track_classes": request.complete_with,
            "bpm": request.bpm,
            "keyscale": request.key_scale,
            "repainting_start": request.repainting_start,
            "repainting_end": request.repainting_end,
            "callback_on_step_end": report_step,
        }
        if source is not None:
            samples = torch.from_numpy(np.ascontiguousarray(source.samples.T))  # (2, frames) at 48 kHz
            arguments["src_audio"] = samples.to(self.device)
        hook = self.pipe.vae.decoder.register_forward_pre_hook(report_tile)
        try:
            with torch.inference_mode():
                audios = self.pipe(**arguments).audios  # (candidates, 2, frames)
        except JobCancelled:  # raised once every job of the batch is cancelled
            return [stop.cancelled[index] for index in range(len(items))]
        finally:
            hook.remove()
        # The pipeline decodes whole latent frames (1920 samples each); the song is as long as asked.
        samples = round(duration * SAMPLE_RATE)
        songs = iter(
            Audio(np.ascontiguousarray(candidate[:, :samples].float().cpu().numpy().T), SAMPLE_RATE)
            for candidate in audios
        )
        details = {
            "task": request.task,
            "checkpoint": {"variant": self.variant, "xl": self.xl},
            "lora": self.lora,
            "steps_used": steps,
            "guidance_scale_used": guidance_scale,
            "decode_tiles": tiles,
            "audio_duration_used": round(duration, 4),
            "source_duration_seconds": round(source.duration, 4) if source is not None else None,
            "residency": self.residency.value,
        }
        outcomes: list[Prediction | Exception] = []
        for index, (item, caption) in enumerate(zip(items, captions, strict=True)):
            outputs = [next(songs) for _ in range(item.request.batch_size)]
            if index in stop.cancelled:
                outcomes.append(stop.cancelled[index])
                continue
            item.job.progress("decoding", 1.0)
            outcomes.append(Prediction(outputs, details | {"caption_used": caption}))
        return outcomes
