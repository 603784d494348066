"""The contract between the shared pipeline and one model: load once (`setup`), then `predict`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import torch

from shared.audio import Audio
from shared.schemas import JobRequest
from shared.settings import Residency, Settings
from shared.volume import RequiredFile

RequestT = TypeVar("RequestT", bound=JobRequest)


class Progress(Protocol):
    def __call__(self, stage: str, fraction: float | None = None) -> None:
        """Report a stage and the fraction of the whole generation done (None when unknown)."""

    @property
    def streaming(self) -> bool:
        """True when this job's audio can be streamed (a generator handler is serving it)."""

    def chunk(self, audio: Audio, stream_format: str) -> None:
        """Stream a piece of the output as it is produced (ignored when not streaming)."""


@dataclass(frozen=True)
class Prediction:
    outputs: list[Audio]  # one per output file
    details: dict[str, Any] = field(default_factory=dict)  # JSON-safe facts for the result's "details"


class ModelAdapter(ABC, Generic[RequestT]):
    """One model. Subclasses declare their request schema and the files their folder must hold.

    The pipeline owns everything around the model: it validates the request, fetches and decodes
    input audio (resampled to `input_sample_rate`, `input_channels`), seeds the generators, encodes
    and stores the output. An adapter only loads the model and turns a request into audio.
    """

    name: ClassVar[str]  # folder under the volume root and segment of the output key
    default_model_id: ClassVar[str]
    request_model: ClassVar[type[JobRequest]]
    required_files: ClassVar[tuple[RequiredFile, ...]] = ("config.json",)
    weight_folders: ClassVar[tuple[str, ...]] = ("",)  # where safetensors weights live ("" = the folder)
    gpu_dtype: ClassVar[torch.dtype] = torch.float16
    streams: ClassVar[bool] = False  # True: served by a generator handler (audio chunks via /stream)
    default_residency: ClassVar[Residency] = Residency.KEEP
    supports_offload: ClassVar[bool] = False  # True: setup() honours self.residency == Residency.OFFLOAD

    def __init__(
        self, model_dir: Path, model_id: str, device: torch.device, dtype: torch.dtype, settings: Settings
    ) -> None:
        self.settings = settings  # the worker's: volume root for companion folders, caps
        self.residency = settings.residency or self.default_residency
        self.model_dir = model_dir
        self.model_id = model_id
        self.device = device
        self.dtype = dtype

    @abstractmethod
    def setup(self) -> None:
        """Load weights from `model_dir` onto `device` in `dtype`; called once per residency."""

    @property
    def input_sample_rate(self) -> int:
        """Rate that input audio is resampled to before `predict`."""
        raise NotImplementedError(f"{self.name} takes no input audio")

    input_channels: ClassVar[int] = 1

    @abstractmethod
    def predict(self, request: RequestT, audio_inputs: dict[str, Audio], progress: Progress) -> Prediction:
        """Generate the outputs; `audio_inputs` maps the labels of `request.input_audio()` to decoded audio."""

    @classmethod
    def client_fields(cls, request: RequestT, result: dict[str, Any]) -> dict[str, Any]:
        """Top-level fields, beside the shared ones, that existing clients of this model expect."""
        return {}
