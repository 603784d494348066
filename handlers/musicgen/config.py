"""MusicGen's own environment variables."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import ModelConfig


class MusicGenConfig(ModelConfig):
    window_seconds: float = Field(
        30.0, gt=0, le=30.0, validation_alias="MUSICGEN_WINDOW_SECONDS", description="audio generated per model window"
    )
    context_seconds: float = Field(
        10.0,
        gt=0,
        validation_alias="MUSICGEN_CONTEXT_SECONDS",
        description="audio so far that each further window continues from",
    )

    @model_validator(mode="after")
    def _context_inside_window(self) -> MusicGenConfig:
        if self.context_seconds >= self.window_seconds:
            raise ValueError(
                f"environment variables MUSICGEN_CONTEXT_SECONDS ({self.context_seconds:g}) must be shorter than "
                f"MUSICGEN_WINDOW_SECONDS ({self.window_seconds:g})"
            )
        return self
