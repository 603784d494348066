"""Input schemas: the fields every handler shares, the audio-source type, and readable validation errors.

Each handler declares its own request model as a subclass of `JobRequest`; every field carries its
type, default, bounds or choices and a description. Unknown keys and wrong types are rejected
(strict mode: "10" is not a number, true is not an integer).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, NamedTuple, TypeVar, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue

from shared.errors import InputError
from shared.formats import AUDIO_FORMATS, AudioFormat

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_BASE64_ALPHABET = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")


def _check_s3_key(key: str) -> str:
    if not key or len(key.encode()) > 1024:
        raise ValueError("must be 1 to 1024 bytes")
    if key.startswith("/") or "\\" in key:
        raise ValueError("must be a relative key: no leading '/' and no '\\'")
    if any(part in {"", ".", ".."} for part in key.split("/")):
        raise ValueError("must not contain empty, '.' or '..' path segments")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise ValueError("must not contain control characters")
    return key


def _check_bucket(name: str) -> str:
    if not _BUCKET_NAME.match(name) or ".." in name:
        raise ValueError("must be a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    return name


S3Key = Annotated[str, AfterValidator(_check_s3_key)]
S3Prefix = Annotated[str, AfterValidator(lambda prefix: _check_s3_key(prefix.rstrip("/")))]
BucketName = Annotated[str, AfterValidator(_check_bucket)]


class AudioLabel(NamedTuple):
    """Which request field an input audio came from: the field, and its position when the field is a list."""

    field: str
    index: int | None = None

    def __str__(self) -> str:  # how error messages name it: "melody_audio", "ref_audio.1"
        return self.field if self.index is None else f"{self.field}.{self.index}"


class BulkyInput:
    """Marks a request field holding data other than audio (megabytes of base64, e.g. latents): the result
    reports it as "<provided>" instead of echoing it, as it does for input audio."""


class AudioInputHint:
    """Says in the JSON schema that a string field takes audio (`"contentMediaType": "audio/*"`), so a form
    built from the schema (audio_client/ui.py) offers a file picker for it."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["contentMediaType"] = "audio/*"
        return schema


class AudioSourceMarker(AudioInputHint):
    """Marks a request field as input audio, so the pipeline fetches and decodes it before generation."""


def _base64_payload(value: str) -> str:
    """The base64 part of a value: after the comma of a data: URI, else the value itself."""
    if not value.startswith("data:"):
        return value
    header, comma, payload = value.partition(",")
    if not comma or not payload:
        raise ValueError("a data: URI must be data:<type>;base64,<base64 audio>")
    return payload


def check_audio_source(value: str, info: ValidationInfo) -> str:
    """Accept an https/http URL, an s3:// URI, or base64 (optionally a data: URI) under the size cap."""
    if value.startswith(("https://", "http://")):
        return value
    if value.startswith("s3://"):
        bucket, _, key = value[5:].partition("/")
        _check_bucket(bucket)
        _check_s3_key(key)
        return value
    payload = _base64_payload(value)
    max_bytes = (info.context or {}).get("input_audio_max_bytes")
    decoded_size = len(payload) * 3 // 4
    if max_bytes is not None and decoded_size > max_bytes:
        raise ValueError(f"base64 audio is about {decoded_size} bytes, over the {max_bytes}-byte cap")
    if not payload or not _BASE64_ALPHABET.match(payload):
        raise ValueError("must be an https:// URL, an s3:// URI or base64-encoded audio")
    return value


AudioSource = Annotated[str, AfterValidator(check_audio_source), AudioSourceMarker()]


def _holds(annotation: Any, marker: type) -> bool:
    """True when the annotation carries the marker, also inside Optional/Union (pydantic keeps it nested)."""
    if get_origin(annotation) is Annotated:
        return any(isinstance(meta, marker) for meta in get_args(annotation)[1:])
    return any(_holds(arg, marker) for arg in get_args(annotation))


def marked_fields(request_model: type[BaseModel], marker: type) -> list[str]:
    """The fields of a request model that carry the marker (bare, or inside Optional/list)."""
    return [
        name
        for name, info in request_model.model_fields.items()
        if any(isinstance(meta, marker) for meta in info.metadata) or _holds(info.annotation, marker)
    ]


class JobRequest(BaseModel):
    """Fields every handler accepts: output format, destination and seed."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    format: AudioFormat = Field("wav", description="Audio container/codec of the output: " + ", ".join(AUDIO_FORMATS))
    s3_bucket: BucketName | None = Field(None, description="Bucket to upload to; default: BUCKET_NAME.")
    s3_key: S3Key | None = Field(None, description="Exact object key; only for jobs with one output.")
    s3_prefix: S3Prefix | None = Field(
        None, description="Key prefix; the worker appends <model>/<job id>-<n>.<ext>. Default: S3_KEY_PREFIX."
    )
    return_base64: bool = Field(
        False, description="Return the audio inline as base64 instead of uploading (small outputs only)."
    )
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Random seed; omitted: a random one, reported in the result."
    )

    def output_count(self) -> int:
        """How many audio files the job makes; handlers with batches override it."""
        return 1

    @model_validator(mode="after")
    def _destination_rules(self) -> JobRequest:
        if self.s3_key is not None and self.s3_prefix is not None:
            raise ValueError("s3_key and s3_prefix: give one or the other, not both")
        if self.return_base64 and (self.s3_key or self.s3_prefix or self.s3_bucket):
            raise ValueError("return_base64 and s3_bucket/s3_key/s3_prefix: inline output is not uploaded")
        if self.s3_key is not None and self.output_count() > 1:
            raise ValueError(f"s3_key: this job makes {self.output_count()} outputs; use s3_prefix instead")
        if self.s3_key is not None and "." in self.s3_key.rsplit("/", 1)[-1]:
            extension = self.s3_key.rsplit(".", 1)[-1].lower()
            known = {info.extension for info in AUDIO_FORMATS.values()}
            if extension in known and extension != AUDIO_FORMATS[self.format].extension:
                raise ValueError(f"s3_key ends in .{extension} but format is {self.format!r}")
        return self

    def input_audio(self) -> dict[AudioLabel, str]:
        """Input audio the pipeline fetches and decodes before generation: label -> source.

        Every AudioSource field is included; a list field gives one label per item.
        """
        sources: dict[AudioLabel, str] = {}
        for name in marked_fields(type(self), AudioSourceMarker):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str):
                sources[AudioLabel(name)] = value
            else:
                sources.update({AudioLabel(name, index): item for index, item in enumerate(value)})
        return sources


def _describe(error: dict[str, Any]) -> str:
    # Drop the union-branch tags pydantic puts in locations ("function-after[...]", "list[str]").
    parts = [str(part) for part in error["loc"] if isinstance(part, int) or "[" not in part]
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        shown = key if key.isidentifier() else repr(key)  # "bad key", "" and control characters stay visible
        return f"{'.'.join([*parts[:-1], shown])}: unknown field"
    where = ".".join(parts) or "input"
    if kind == "missing":
        return f"{where}: field required"
    message = error["msg"].removeprefix("Value error, ")
    if kind == "value_error" and not error["loc"]:
        return message  # cross-field rule: the message names its fields
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{where}: {message} (got {shown})"


RequestT = TypeVar("RequestT", bound=JobRequest)


def parse_request(model: type[RequestT], raw: Any, input_audio_max_bytes: int) -> RequestT:
    """Validate a job's input; a failure becomes one InputError whose message lists every bad field."""
    if not isinstance(raw, dict):
        raise InputError("input: must be a JSON object")
    try:
        return model.model_validate(raw, context={"input_audio_max_bytes": input_audio_max_bytes})
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        allowed = ", ".join(model.model_fields)
        if any(error["type"] == "extra_forbidden" for error in exc.errors()):
            problems.append(f"allowed fields: {allowed}")
        raise InputError("; ".join(problems)) from None


def decode_base64_audio(value: str) -> bytes:
    payload = re.sub(r"\s", "", _base64_payload(value))
    decoder = base64.urlsafe_b64decode if ("-" in payload or "_" in payload) else base64.b64decode
    try:
        return decoder(payload + "=" * (-len(payload) % 4))
    except binascii.Error as exc:
        raise InputError(f"input audio: base64 does not decode ({exc})") from None
