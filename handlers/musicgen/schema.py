"""The MusicGen request: every input once, with type, default, bounds and description (no torch here)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, StringConstraints

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
