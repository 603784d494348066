"""ACE-Step 1.5 through diffusers' AceStepPipeline: text-to-music and "lego" stem layering.

Lego: a source stem (vocals, a drum loop...) goes in, a new track is generated to sit over it. The
worker's default residency is `unload` (the reference plan shares one 16 GB GPU between models).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import AceStepPipeline

from handlers.ace_step.catalog import CATALOG
from handlers.ace_step.config import AceStepConfig
from handlers.ace_step.schema import SAMPLE_RATE, TRACK_CAPTIONS, AceStepRequest
from shared.adapter import JobContext, ModelAdapter, Prediction
from shared.audio import Audio
from shared.errors import InputError
from shared.schemas import AudioLabel
from shared.settings import Residency

SOURCE = AudioLabel("audio")


class AceStep(ModelAdapter[AceStepRequest, AceStepConfig]):
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

    def setup(self) -> None:
        self.pipe = AceStepPipeline.from_pretrained(self.model_dir, dtype=self.dtype)
        if self.residency is Residency.OFFLOAD and self.device.type == "cuda":
            self.pipe.enable_model_cpu_offload(device=self.device)  # weights wait in CPU memory
        else:
            self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)

    @property
    def input_sample_rate(self) -> int:
        return SAMPLE_RATE

    def predict(self, request: AceStepRequest, audio_inputs: dict[AudioLabel, Audio], job: JobContext) -> Prediction:
        if request.task == "cover" and self.pipe.audio_tokenizer is None:
            raise InputError(
                f"task: 'cover' needs audio_tokenizer/ and audio_token_detokenizer/ in {self.model_dir}, "
                "which this checkpoint lacks"
            )
        source = audio_inputs.get(SOURCE)
        duration = request.audio_duration or (source.duration if source is not None else 30.0)
        if request.repainting_end is not None and request.repainting_end > duration:
            raise InputError(
                f"repainting_end: {request.repainting_end:g} s is past the end of the audio ({duration:g} s)"
            )
        caption = request.caption or TRACK_CAPTIONS.get(request.track_type or "", "")

        def report_step(pipe, step: int, timestep, tensors: dict) -> dict:
            job.progress("denoising", (step + 1) / request.steps)
            job.stop.step()  # a cancelled job ends here, between two diffusion steps
            return {}

        arguments: dict[str, Any] = {
            "prompt": [caption] * request.batch_size,
            "lyrics": [request.lyrics] * request.batch_size,
            "audio_duration": duration,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance_scale,
            "task_type": request.task,
            "track_name": request.track_type,
            "bpm": request.bpm,
            "keyscale": request.key_scale,
            "repainting_start": request.repainting_start,
            "repainting_end": request.repainting_end,
            "callback_on_step_end": report_step,
        }
        if source is not None:
            samples = torch.from_numpy(np.ascontiguousarray(source.samples.T))  # (2, frames) at 48 kHz
            arguments["src_audio"] = samples.to(self.device)
        with torch.inference_mode():
            audios = self.pipe(**arguments).audios  # (batch, 2, frames)
        outputs = [Audio(np.ascontiguousarray(candidate.float().cpu().numpy().T), SAMPLE_RATE) for candidate in audios]
        return Prediction(
            outputs,
            {
                "task": request.task,
                "caption_used": caption,
                "audio_duration_used": round(duration, 4),
                "source_duration_seconds": round(source.duration, 4) if source is not None else None,
                "residency": self.residency.value,
            },
        )
