"""Higgs Audio V2's own environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import ModelConfig


class HiggsAudioConfig(ModelConfig):
    tokenizer_id: str | None = Field(
        None,
        validation_alias="HIGGS_AUDIO_TOKENIZER_ID",
        description="audio tokenizer on the volume (ORG/NAME); default <org of MODEL_ID>/higgs-audio-v2-tokenizer",
    )
    voices_dir: Path | None = Field(
        None,
        validation_alias="HIGGS_AUDIO_VOICES_DIR",
        description="voice presets (<name>.wav + <name>.txt); default <VOLUME_ROOT>/higgs_audio/voices",
    )
    static_cache: bool = Field(
        False,
        validation_alias="HIGGS_AUDIO_STATIC_CACHE",
        description="static KV cache (compiled decoding with triton)",
    )
