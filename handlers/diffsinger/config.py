"""DiffSinger's own environment variables: where the bank and shared vocoders are, the score cap, threads."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import ModelConfig


class DiffSingerConfig(ModelConfig):
    model_path: Path | None = Field(
        None,
        validation_alias="DIFFSINGER_MODEL_PATH",
        description="the voicebank folder itself (MODEL_DIR wins over it; default: the volume's voicebanks/MODEL_ID)",
    )
    vocoders_dir: Path | None = Field(
        None,
        validation_alias="DIFFSINGER_VOCODERS_DIR",
        description="shared vocoders: a folder per name banks give (default: <VOLUME_ROOT>/diffsinger/vocoders)",
    )
    max_seconds: float = Field(
        600.0, gt=0, le=3600, validation_alias="DIFFSINGER_MAX_SECONDS", description="the longest score a job may sing"
    )
    threads: int = Field(
        0, ge=0, le=256, validation_alias="DIFFSINGER_THREADS", description="onnxruntime CPU threads (0: one per core)"
    )
