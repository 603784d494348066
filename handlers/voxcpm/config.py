"""VoxCPM's own environment variables: the operator's LoRA, and compilation."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.fetch import artifact_name
from shared.settings import LoraId, ModelConfig, Sha256


class VoxCPMConfig(ModelConfig):
    lora_uri: str | None = Field(
        None, validation_alias="VOXCPM_LORA_URI", description="LoRA applied at start-up: file://, https:// or s3://"
    )
    lora_id: LoraId | None = Field(
        None, validation_alias="VOXCPM_LORA_ID", description="its name in model_info.lora and its cache folder"
    )
    lora_sha256: Sha256 | None = Field(
        None, validation_alias="VOXCPM_LORA_SHA256", description="checked before use (64 hex digits)"
    )
    lora_alpha: int | None = Field(
        None, ge=1, validation_alias="VOXCPM_LORA_ALPHA", description="LoRA scaling; default 2 x rank"
    )
    lora_cache_dir: Path = Field(
        Path("/tmp/voxcpm-lora"), validation_alias="VOXCPM_LORA_CACHE_DIR", description="local cache of fetched LoRAs"
    )
    compile: bool = Field(
        False, validation_alias="VOXCPM_COMPILE", description="torch.compile on GPU (image built with triton)"
    )

    def lora_name(self) -> str | None:
        return None if self.lora_uri is None else artifact_name(self.lora_uri, self.lora_id)
