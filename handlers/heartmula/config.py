"""HeartMuLa's own environment variables."""

from __future__ import annotations

from pydantic import Field

from handlers.heartmula.schema import FRAME_MS, LONGEST_MS
from shared.settings import ModelConfig


class HeartMuLaWorkerConfig(ModelConfig):
    max_duration_ms: int = Field(
        240_000,
        ge=FRAME_MS,
        le=LONGEST_MS,
        validation_alias="HEARTMULA_MAX_DURATION_MS",
        description="the longest max_duration_ms a request may ask for (set the execution timeout to match)",
    )
