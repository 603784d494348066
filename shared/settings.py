"""Worker configuration from environment variables, declared once with pydantic-settings.

Precedence, highest first: a parameter the operator locks (LOCKED_PARAMETERS), a field in the
job's input, then the environment variable, then the default declared here (or the worker's own
default, for MODEL_RESIDENCY). Every variable is read and checked once, at start-up; a wrong value
becomes a start-up error naming the variable and the rule, returned as the error of every job.

Booleans follow one grammar everywhere: 1/true/yes/on and 0/false/no/off (any case). An empty
variable counts as unset. A model's own variables (MUSICGEN_*, VOXCPM_*, ...) are declared the same way,
in `handlers/<model>/config.py`, as a `ModelConfig`.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from shared.errors import SettingsError

MIB = 1024 * 1024
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY|ACCESS_KEY", re.IGNORECASE)


# An operator artifact's checksum and name (a LoRA's), as workers' variables declare them.
Sha256 = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[0-9a-f]{64}$")]
LoraId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class Residency(StrEnum):
    """What happens to a loaded model between jobs."""

    KEEP = "keep"  # stay loaded: warm jobs skip the load
    UNLOAD = "unload"  # drop after each job and hand GPU memory back (shared GPUs)
    OFFLOAD = "offload"  # stay loaded in CPU memory; the library's hooks move each part to the GPU as it runs
    # Stay loaded in CPU memory; a job's phases take turns on the GPU, one part at a time (shared/parts.py).
    SEQUENTIAL = "sequential"


class EnvSettings(BaseSettings):
    """Base of every settings class: immutable, unknown variables ignored, empty means unset.

    Fields name their variable with `validation_alias`; tests and code may also pass field names.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_ignore_empty=True, validate_by_name=True)


class ModelConfig(EnvSettings):
    """A model's own environment variables; a worker without any uses this class as it is."""


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def comma_separated(value: Any) -> Any:
    """A variable holding a comma-separated list (blank items dropped)."""
    return tuple(item.strip() for item in value.split(",") if item.strip()) if isinstance(value, str) else value


def _json_object(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"must be a JSON object: {exc.msg}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"must be a JSON object, got {type(parsed).__name__}")
    return parsed


class Mp3Settings(EnvSettings):
    """Every worker's MP3 output (files and streamed chunks)."""

    bitrate_mode: Annotated[Literal["constant", "average", "variable"], BeforeValidator(_lower)] = Field(
        "constant", validation_alias="MP3_BITRATE_MODE", description="libsndfile's MP3 bitrate mode"
    )
    # libsndfile refuses 1.0; None leaves its default.
    compression_level: float | None = Field(
        None, ge=0.0, le=0.99, validation_alias="MP3_COMPRESSION_LEVEL", description="0 = highest bitrate .. 0.99"
    )


class S3Settings(EnvSettings):
    """Where results go when a bucket is configured (RunPod's variable names, plus BUCKET_NAME)."""

    endpoint_url: str | None = Field(
        None, validation_alias="BUCKET_ENDPOINT_URL", description="S3 endpoint of a non-AWS store; none: AWS"
    )
    access_key_id: SecretStr | None = Field(
        None, validation_alias="BUCKET_ACCESS_KEY_ID", description="none: boto3's standard credential chain"
    )
    secret_access_key: SecretStr | None = Field(
        None, validation_alias="BUCKET_SECRET_ACCESS_KEY", description="none: boto3's standard credential chain"
    )
    bucket: str | None = Field(
        None, validation_alias="BUCKET_NAME", description="default bucket; none anywhere: outputs go to OUTPUT_DIR"
    )
    region: str | None = Field(None, validation_alias="BUCKET_REGION", description="signing region; none: us-east-1")
    allowed_buckets: Annotated[tuple[str, ...] | None, NoDecode, BeforeValidator(comma_separated)] = Field(
        None,
        validation_alias="S3_ALLOWED_BUCKETS",
        description="buckets requests may write to or read s3:// inputs from; none: BUCKET_NAME only",
    )
    required_prefix: str | None = Field(
        None,
        validation_alias="S3_REQUIRED_PREFIX",
        description="a key prefix every output and s3:// input key must start with",
    )
    allow_overwrite: bool = Field(
        False, validation_alias="S3_ALLOW_OVERWRITE", description="let outputs replace existing objects"
    )
    key_prefix: str = Field(
        "outputs", validation_alias="S3_KEY_PREFIX", description="keys are <prefix>/<worker>/<job id>-<n>.<ext>"
    )
    timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        validation_alias="S3_TIMEOUT_SECONDS",
        description="deadline for one S3 operation (an upload, an input read), retries included",
    )
    presign_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=1,
        le=7 * 24 * 3600,  # SigV4 presigned URLs cannot outlive 7 days
        validation_alias="PRESIGNED_URL_EXPIRY_SECONDS",
        description="lifetime of the returned https URL",
    )

    @field_validator("key_prefix")
    @classmethod
    def _strip_slashes(cls, prefix: str) -> str:
        return prefix.strip().strip("/") or "outputs"

    def buckets_allowed(self) -> tuple[str, ...]:
        if self.allowed_buckets is not None:
            return self.allowed_buckets
        return (self.bucket,) if self.bucket else ()

    @model_validator(mode="after")
    def _default_prefix_inside_the_required_one(self) -> S3Settings:
        required = (self.required_prefix or "").strip("/")
        if required and not (self.key_prefix == required or self.key_prefix.startswith(required + "/")):
            # A plain string prefix would let S3_KEY_PREFIX=team.ab pass S3_REQUIRED_PREFIX=team.a.
            raise ValueError(
                f"environment variables S3_KEY_PREFIX ({self.key_prefix!r}) must be S3_REQUIRED_PREFIX "
                f"({self.required_prefix!r}) or a folder inside it ({required + '/...'!r})"
            )
        return self


class Settings(EnvSettings):
    """The variables every worker reads."""

    volume_root: Path = Field(
        Path("/runpod-volume"), validation_alias="VOLUME_ROOT", description="where the network volume is mounted"
    )
    model_id: str | None = Field(
        None, validation_alias="MODEL_ID", description="ORG/NAME of the checkpoint; none: the worker's default"
    )
    model_dir: Path | None = Field(
        None, validation_alias="MODEL_DIR", description="an explicit model folder; skips the volume lookup"
    )
    device: Annotated[Literal["auto", "cuda", "cpu"], BeforeValidator(_lower)] = Field(
        "auto", validation_alias="DEVICE", description="auto: the GPU when there is one"
    )
    dtype: Annotated[Literal["auto", "float32", "float16", "bfloat16"], BeforeValidator(_lower)] = Field(
        "auto", validation_alias="MODEL_DTYPE", description="auto: the worker's GPU dtype on a GPU, float32 on CPU"
    )
    residency: Annotated[Residency | None, BeforeValidator(_lower)] = Field(
        None,
        validation_alias="MODEL_RESIDENCY",
        description="keep, unload, offload or sequential; none: the worker's default",
    )
    locked_parameters: Annotated[dict[str, Any], NoDecode, BeforeValidator(_json_object)] = Field(
        default_factory=dict,
        validation_alias="LOCKED_PARAMETERS",
        description="JSON object of request fields the operator fixes for every job",
    )
    output_dir: Path = Field(
        Path("outputs"), validation_alias="OUTPUT_DIR", description="local folder when no bucket is configured"
    )
    # RunPod's /run payload limit is 10 MB; base64 adds a third, so 4 MiB of audio stays well under.
    inline_max_bytes: int = Field(
        4 * MIB, ge=0, le=7 * MIB, validation_alias="INLINE_OUTPUT_MAX_BYTES", description="cap of return_base64"
    )
    # RunPod keeps 10 MB of a /run job's output (20 MB for /runsync) and silently drops a larger one.
    result_max_bytes: int = Field(
        9_500_000,
        ge=10_000,
        le=20_000_000,
        validation_alias="RESULT_MAX_BYTES",
        description="largest result JSON a job returns; bigger data goes to S3 or the job fails with a reason",
    )
    input_audio_max_bytes: int = Field(
        20 * MIB, ge=1024, le=1024 * MIB, validation_alias="INPUT_AUDIO_MAX_BYTES", description="cap of input audio"
    )
    input_fetch_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        validation_alias="INPUT_AUDIO_FETCH_TIMEOUT_SECONDS",
        description="deadline for downloading one input audio URL, redirects included",
    )
    allow_private_urls: bool = Field(
        False,
        validation_alias="INPUT_AUDIO_ALLOW_PRIVATE_URLS",
        description="fetch input-audio URLs on private and loopback addresses too",
    )
    stream_audio: bool = Field(
        False,
        validation_alias="STREAM_AUDIO",
        description="a streaming deployment: audio chunks through /stream, the result as the last item",
    )
    max_concurrency: int = Field(
        1,
        ge=1,
        le=64,
        validation_alias="MAX_CONCURRENCY",
        description="jobs the worker takes from RunPod at once; compatible ones generate as one batch",
    )
    batch_window_ms: float = Field(
        20.0,
        ge=0,
        le=10_000,
        validation_alias="BATCH_WINDOW_MS",
        description="how long a job waits for compatible jobs to batch with (MAX_CONCURRENCY > 1)",
    )
    batch_max_outputs: int = Field(
        8, ge=1, le=64, validation_alias="BATCH_MAX_OUTPUTS", description="the most outputs one batch generates"
    )
    s3: S3Settings = Field(default_factory=S3Settings, description="BUCKET_* and the S3 options")
    mp3: Mp3Settings = Field(default_factory=Mp3Settings, description="MP3_* encoder options")


def _describe(error: dict[str, Any]) -> str:
    name = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if not name:
        return message  # a rule across variables: its message names them
    shown = "" if _SECRET_NAME.search(name) else f" (got {error.get('input')!r})"
    return f"environment variable {name}: {message}{shown}"


SettingsT = TypeVar("SettingsT", bound=EnvSettings)


def read_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Read a settings class from the environment; a bad value becomes one SettingsError naming each variable."""
    try:
        return settings_class()
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(error) for error in exc.errors())) from None
    except SourceError as exc:  # a value the source could not decode at all
        raise SettingsError(str(exc)) from None


def variables(settings_class: type[EnvSettings]) -> list[str]:
    """The environment variables a settings class reads (for documentation checks)."""
    return [str(field.validation_alias) for field in settings_class.model_fields.values() if field.validation_alias]
