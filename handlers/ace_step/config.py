"""ACE-Step's own environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode

from handlers.ace_step.schema import Task
from shared.fetch import artifact_name
from shared.settings import LoraId, ModelConfig, Sha256, comma_separated

ALL_TASKS: tuple[str, ...] = get_args(Task)


class AceStepConfig(ModelConfig):
    tasks: Annotated[tuple[Task, ...], NoDecode, BeforeValidator(comma_separated)] = Field(
        ALL_TASKS,
        min_length=1,
        validation_alias="ACE_STEP_TASKS",
        description="the tasks this endpoint accepts, comma-separated (e.g. text2music,lego)",
    )
    lora_uri: str | None = Field(
        None,
        validation_alias="ACE_STEP_LORA_URI",
        description="a LoRA for the transformer (diffusers format), applied at start-up: file://, https:// or s3://",
    )
    lora_id: LoraId | None = Field(
        None, validation_alias="ACE_STEP_LORA_ID", description="its name in details.lora and its cache folder"
    )
    lora_sha256: Sha256 | None = Field(
        None, validation_alias="ACE_STEP_LORA_SHA256", description="checked before use (64 hex digits)"
    )
    lora_scale: float = Field(
        1.0, gt=0.0, le=4.0, validation_alias="ACE_STEP_LORA_SCALE", description="how strongly the LoRA applies"
    )
    lora_cache_dir: Path = Field(
        Path("/tmp/ace-step-lora"), validation_alias="ACE_STEP_LORA_CACHE_DIR", description="local cache of the LoRA"
    )

    def lora_name(self) -> str | None:
        return None if self.lora_uri is None else artifact_name(self.lora_uri, self.lora_id)
