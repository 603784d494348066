"""Worker configuration from environment variables.

Precedence, highest first: a parameter the operator locks (LOCKED_PARAMETERS), a field in the
job's input, then the environment variable, then the default written here (or the handler's own
default, for MODEL_RESIDENCY). Settings are read once per worker process; `Settings.from_env` is pure so
tests build settings from a plain dict.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Residency(StrEnum):
    """What happens to a loaded model between jobs."""

    KEEP = "keep"  # stay loaded: warm jobs skip the load
    UNLOAD = "unload"  # drop after each job and hand GPU memory back (shared GPUs)
    OFFLOAD = "offload"  # stay loaded in CPU memory; each part visits the GPU only while it runs


class SettingsError(ValueError):
    """An environment variable holds a value the worker cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"environment variable {name} must be between {minimum} and {maximum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise SettingsError(f"environment variable {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _fraction(env: Mapping[str, str], name: str, maximum: float) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"environment variable {name} must be a number from 0 to {maximum}, got {raw!r}") from None
    if not 0.0 <= value <= maximum:
        raise SettingsError(f"environment variable {name} must be a number from 0 to {maximum}, got {value}")
    return value


def _residency(env: Mapping[str, str]) -> Residency | None:
    if not env.get("MODEL_RESIDENCY", "").strip():
        return None
    return Residency(_choice(env, "MODEL_RESIDENCY", "keep", tuple(Residency)))


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = env.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"environment variable {name} must be a JSON object: {exc.msg}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"environment variable {name} must be a JSON object, got {type(value).__name__}")
    return value


MIB = 1024 * 1024


@dataclass(frozen=True)
class Mp3Settings:
    bitrate_mode: str = "constant"  # constant, average or variable
    compression_level: float | None = None  # 0 = highest bitrate .. 0.99 = smallest; None: libsndfile's


@dataclass(frozen=True)
class S3Settings:
    """Where results go when a bucket is configured (RunPod's variable names, plus BUCKET_NAME)."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    bucket: str | None = None
    region: str | None = None
    key_prefix: str = "outputs"
    presign_expiry_s: int = 7 * 24 * 3600


@dataclass(frozen=True)
class Settings:
    volume_root: Path = Path("/runpod-volume")
    model_id: str | None = None  # None: the handler's default model
    model_dir: Path | None = None  # explicit folder: skips volume resolution
    device: str = "auto"
    dtype: str = "auto"
    residency: Residency | None = None  # None: the handler's default
    # Request fields the operator fixes for every job (JSON object in LOCKED_PARAMETERS).
    locked_parameters: dict[str, Any] = field(default_factory=dict)
    output_dir: Path = Path("outputs")
    inline_max_bytes: int = 4 * MIB
    input_audio_max_bytes: int = 20 * MIB
    allow_private_urls: bool = False
    s3: S3Settings = field(default_factory=S3Settings)
    mp3: Mp3Settings = field(default_factory=Mp3Settings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        explicit_dir = _optional(env, "MODEL_DIR")
        return cls(
            volume_root=Path(env.get("VOLUME_ROOT", "").strip() or "/runpod-volume"),
            model_id=_optional(env, "MODEL_ID"),
            model_dir=Path(explicit_dir) if explicit_dir else None,
            device=_choice(env, "DEVICE", "auto", ("auto", "cuda", "cpu")),
            dtype=_choice(env, "MODEL_DTYPE", "auto", ("auto", "float32", "float16", "bfloat16")),
            residency=_residency(env),
            locked_parameters=_json_object(env, "LOCKED_PARAMETERS"),
            output_dir=Path(env.get("OUTPUT_DIR", "").strip() or "outputs"),
            # RunPod's /run payload limit is 10 MB; base64 adds a third, so 4 MiB of audio stays well under.
            inline_max_bytes=_int(env, "INLINE_OUTPUT_MAX_BYTES", 4 * MIB, 0, 7 * MIB),
            input_audio_max_bytes=_int(env, "INPUT_AUDIO_MAX_BYTES", 20 * MIB, 1024, 1024 * MIB),
            allow_private_urls=_flag(env, "INPUT_AUDIO_ALLOW_PRIVATE_URLS"),
            mp3=Mp3Settings(
                bitrate_mode=_choice(env, "MP3_BITRATE_MODE", "constant", ("constant", "average", "variable")),
                compression_level=_fraction(env, "MP3_COMPRESSION_LEVEL", 0.99),  # libsndfile refuses 1.0
            ),
            s3=S3Settings(
                endpoint_url=_optional(env, "BUCKET_ENDPOINT_URL"),
                access_key_id=_optional(env, "BUCKET_ACCESS_KEY_ID"),
                secret_access_key=_optional(env, "BUCKET_SECRET_ACCESS_KEY"),
                bucket=_optional(env, "BUCKET_NAME"),
                region=_optional(env, "BUCKET_REGION"),
                key_prefix=(env.get("S3_KEY_PREFIX", "").strip().strip("/") or "outputs"),
                # SigV4 presigned URLs cannot outlive 7 days.
                presign_expiry_s=_int(env, "PRESIGNED_URL_EXPIRY_SECONDS", 7 * 24 * 3600, 1, 7 * 24 * 3600),
            ),
        )
