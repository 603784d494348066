"""ACE-Step 1.5 through diffusers' AceStepPipeline: text-to-music and "lego" stem layering.

Lego: a source stem (vocals, a drum loop...) goes in, a new track is generated to sit over it. The
worker's default residency is `unload` (the reference plan shares one 16 GB GPU between models).
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from diffusers import AceStepPipeline
from pydantic import Field, StringConstraints, model_validator

from shared.adapter import ModelAdapter, Prediction, Progress
from shared.audio import Audio
from shared.errors import InputError, ModelFilesError
from shared.schemas import AudioSource, JobRequest
from shared.settings import Residency

SAMPLE_RATE = 48000
TASKS = ("text2music", "lego", "repaint", "cover", "extract")
# The reference plan's captions for each lego track; a request's caption replaces them.
TRACK_CAPTIONS = {
    "vocals": "soulful indie vocalist, warm, wordless melody, expressive",
    "backing_vocals": "background vocals, close harmony, wordless, warm",
    "drums": "live acoustic drum kit, tight kick and snare, brushed hi-hats",
}
_KEY_SCALE = re.compile(r"^[A-G](#|b)? (major|minor)$")
_NEEDS_SOURCE = {"lego", "repaint", "cover", "extract"}
Caption = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class AceStepRequest(JobRequest):
    task: Literal["text2music", "lego", "repaint", "cover", "extract"] = Field(
        "text2music", description="text2music, lego (a track over a source stem), repaint, cover or extract."
    )
    caption: Caption | None = Field(None, description="Style tags/caption; lego defaults to the track type's caption.")
    lyrics: Annotated[str, StringConstraints(max_length=4096)] = Field(
        "", description="Lyrics, with [verse]/[chorus] tags; empty for instrumental."
    )
    audio: AudioSource | None = Field(
        None, description="Source audio for lego/repaint/cover/extract (WAV/MP3/FLAC: base64, https or s3://)."
    )
    track_type: Literal["vocals", "backing_vocals", "drums"] | None = Field(
        None, description="The track lego generates (or extract pulls out)."
    )
    bpm: int | None = Field(None, ge=30, le=300, description="Tempo in beats per minute (required for lego).")
    key_scale: Annotated[str, StringConstraints(pattern=_KEY_SCALE.pattern)] | None = Field(
        None, description="Key, e.g. 'F# minor' or 'C major'."
    )
    audio_duration: float | None = Field(
        None, ge=1.0, le=600.0, description="Seconds; omitted: the source's length, or 30 s for text2music."
    )
    batch_size: int = Field(1, ge=1, le=2, description="Candidates to generate; each one is uploaded.")
    repainting_start: float | None = Field(None, ge=0.0, description="Start (s) of the section to regenerate.")
    repainting_end: float | None = Field(None, gt=0.0, description="End (s) of the section to regenerate.")
    steps: int = Field(50, ge=1, le=200, description="Diffusion steps.")
    guidance_scale: float = Field(7.0, ge=1.0, le=20.0, description="Classifier-free guidance (1 = off).")

    def output_count(self) -> int:
        return self.batch_size

    @model_validator(mode="after")
    def _task_rules(self) -> AceStepRequest:
        task = self.task
        if task in _NEEDS_SOURCE and self.audio is None:
            raise ValueError(f"audio: task {task!r} needs source audio")
        if task == "text2music":
            if self.audio is not None:
                raise ValueError("audio: text2music does not take source audio (use lego, repaint or cover)")
            if self.caption is None:
                raise ValueError("caption: required for text2music")
        if task == "lego" and (self.track_type is None or self.bpm is None):
            missing = [name for name in ("track_type", "bpm") if getattr(self, name) is None]
            raise ValueError(f"{' and '.join(missing)}: required for lego")
        if task == "extract" and self.track_type is None:
            raise ValueError("track_type: required for extract")
        if task not in ("lego", "extract") and self.track_type is not None:
            raise ValueError(f"track_type: only for lego and extract, not {task!r}")
        has_section = self.repainting_start is not None or self.repainting_end is not None
        if has_section and task not in ("lego", "repaint"):
            raise ValueError(f"repainting_start/repainting_end: only for lego and repaint, not {task!r}")
        if task == "repaint" and (self.repainting_start is None or self.repainting_end is None):
            raise ValueError("repainting_start and repainting_end: required for repaint")
        if has_section:
            start, end = self.repainting_start or 0.0, self.repainting_end
            if end is None or end <= start:
                raise ValueError(f"repainting_end: must be after repainting_start ({start:g} s), got {end}")
        return self


def _allowed_tasks() -> tuple[str, ...]:
    raw = os.environ.get("ACE_STEP_TASKS", "").strip()
    if not raw:
        return TASKS
    tasks = tuple(task.strip() for task in raw.split(",") if task.strip())
    unknown = [task for task in tasks if task not in TASKS]
    if unknown or not tasks:
        raise ModelFilesError(f"ACE_STEP_TASKS: {', '.join(unknown) or 'empty'}; choose from {', '.join(TASKS)}")
    return tasks


class AceStep(ModelAdapter[AceStepRequest]):
    name = "ace_step"
    default_model_id = "ACE-Step/acestep-v15-base-diffusers"
    request_model = AceStepRequest
    required_files = (
        "model_index.json",
        "scheduler/scheduler_config.json",
        "tokenizer/tokenizer.json",
        *(f"{part}/config.json" for part in ("vae", "text_encoder", "transformer", "condition_encoder")),
    )
    weight_folders = ("vae", "text_encoder", "transformer", "condition_encoder")
    gpu_dtype: ClassVar[torch.dtype] = torch.bfloat16
    input_channels: ClassVar[int] = 2
    default_residency: ClassVar[Residency] = Residency.UNLOAD
    supports_offload: ClassVar[bool] = True

    def setup(self) -> None:
        self.allowed_tasks = _allowed_tasks()
        self.pipe = AceStepPipeline.from_pretrained(self.model_dir, dtype=self.dtype)
        if self.residency is Residency.OFFLOAD and self.device.type == "cuda":
            self.pipe.enable_model_cpu_offload(device=self.device)  # weights wait in CPU memory
        else:
            self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)

    @property
    def input_sample_rate(self) -> int:
        return SAMPLE_RATE

    def predict(self, request: AceStepRequest, audio_inputs: dict[str, Audio], progress: Progress) -> Prediction:
        if request.task not in self.allowed_tasks:
            raise InputError(
                f"task: {request.task!r} is disabled on this endpoint (allowed: {', '.join(self.allowed_tasks)})"
            )
        if request.task == "cover" and self.pipe.audio_tokenizer is None:
            raise InputError(
                f"task: 'cover' needs audio_tokenizer/ and audio_token_detokenizer/ in {self.model_dir}, "
                "which this checkpoint lacks"
            )
        source = audio_inputs.get("audio")
        duration = request.audio_duration or (source.duration if source is not None else 30.0)
        if request.repainting_end is not None and request.repainting_end > duration:
            raise InputError(
                f"repainting_end: {request.repainting_end:g} s is past the end of the audio ({duration:g} s)"
            )
        caption = request.caption or TRACK_CAPTIONS.get(request.track_type or "", "")

        def report_step(pipe, step: int, timestep, tensors: dict) -> dict:
            progress("denoising", (step + 1) / request.steps)
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
