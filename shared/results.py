"""The shape of a finished job's result: outputs, model, parameters, timings, memory, model extras."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.audio import Audio
from shared.formats import AUDIO_FORMATS
from shared.schemas import BulkyInput, JobRequest, marked_fields


def describe_output(
    index: int, audio: Audio, data: bytes, rate: int, audio_format: str, location: dict[str, str]
) -> dict[str, Any]:
    return {
        "index": index,
        **location,
        "format": audio_format,
        "content_type": AUDIO_FORMATS[audio_format].content_type,
        "bytes": len(data),
        "duration_seconds": round(audio.duration, 4),
        "sample_rate": rate,
        "channels": audio.channels,
    }


def parameters_used(request: JobRequest, seed: int) -> dict[str, Any]:
    """The request as validated, with the seed that ran; input audio and other bulky data are not echoed."""
    used = request.model_dump(mode="json")
    used["seed"] = seed
    for label in request.input_audio():
        if label.index is None:
            used[label.field] = "<provided>"
        else:
            used[label.field][label.index] = "<provided>"
    for name in marked_fields(type(request), BulkyInput):
        if used[name] is not None:
            used[name] = "<provided>"
    return used


def first_output_aliases(outputs: list[dict[str, Any]], aliases: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Top-level copies of the first output's fields, as a model's earlier API named them."""
    if not outputs or not aliases:
        return {}
    first = outputs[0]
    return {name: next((first[key] for key in keys if key in first), None) for name, keys in aliases.items()}
