"""ACE-Step's own environment variables."""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode

from handlers.ace_step.schema import Task
from shared.settings import ModelConfig, comma_separated

ALL_TASKS: tuple[str, ...] = get_args(Task)


class AceStepConfig(ModelConfig):
    tasks: Annotated[tuple[Task, ...], NoDecode, BeforeValidator(comma_separated)] = Field(
        ALL_TASKS,
        min_length=1,
        validation_alias="ACE_STEP_TASKS",
        description="the tasks this endpoint accepts, comma-separated (e.g. text2music,lego)",
    )
