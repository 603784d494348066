"""VoxCPM's own environment variables: the operator's LoRA, and compilation."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints

from shared.settings import ModelConfig

Sha256 = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[0-9a-f]{64}$")]
LoraId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


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
        if self.lora_uri is None:
            return None
        return self.lora_id or hashlib.sha256(self.lora_uri.encode()).hexdigest()[:16]
