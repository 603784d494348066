"""The contract between the shared pipeline and one model: load once (`setup`), then `predict`."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from shared.audio import Audio
from shared.errors import InputError
from shared.memory import PhaseLog
from shared.progress import AudioStream, Progress
from shared.schemas import AudioLabel, JobRequest
from shared.settings import ModelConfig, Residency, Settings
from shared.stop import StopSignal
from shared.volume import VolumeCatalog
from shared.workers import HANDLERS

RequestT = TypeVar("RequestT", bound=JobRequest)
ConfigT = TypeVar("ConfigT", bound=ModelConfig)


@dataclass(frozen=True)
class JobContext:
    """What the pipeline hands `predict` besides the request and its audio."""

    # Applied to the global generators before a lone `predict`; batching adapters seed a generator per job
    # from it instead. Reported in the result.
    seed: int
    progress: Progress
    stop: StopSignal  # call stop.step() at each natural step (or use its transformers/torch hooks)
    phases: PhaseLog  # the job's phases with the memory around each, reported under memory_mib.phases
    stream: AudioStream | None = None  # set when a generator handler serves this job


@dataclass(frozen=True)
class BatchItem(Generic[RequestT]):
    """One job of a batch: what `predict` receives for it."""

    request: RequestT
    audio_inputs: dict[AudioLabel, Audio]
    job: JobContext


@dataclass(frozen=True)
class Attachment:
    """Data a job returns beside its audio (e.g. voice latents), reported as details[<name>].

    Inline as base64 while the result stays under RESULT_MAX_BYTES; otherwise uploaded beside the audio
    and reported as an s3:// URI and a presigned URL (or the job fails with the reason, without a bucket).
    """

    data: bytes
    fields: dict[str, Any]  # JSON-safe facts about the data, reported with it
    extension: str = "bin"
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Prediction:
    outputs: list[Audio]  # one per output file
    details: dict[str, Any] = field(default_factory=dict)  # JSON-safe facts for the result's "details"
    # Top-level result fields, beside the shared ones, that existing clients of this model expect.
    response_fields: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, Attachment] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadTarget:
    """Where and how a model is loaded: resolved by the worker before `setup`."""

    model_dir: Path
    model_id: str
    device: Any  # the runtime's device handle (torch.device for torch)
    dtype: Any  # the runtime's dtype handle (torch.dtype for torch)
    residency: Residency


class ModelAdapter(ABC, Generic[RequestT, ConfigT]):
    """One model. Subclasses declare their request schema, their variables and their volume catalog.

    The pipeline owns everything around the model: it validates the request, fetches and decodes
    input audio (resampled to `input_sample_rate`, `input_channels`), seeds the generators, encodes
    and stores the output. An adapter only loads the model and turns a request into audio.
    """

    catalog: ClassVar[VolumeCatalog]
    request_model: ClassVar[type[JobRequest]]
    config_model: ClassVar[type[ModelConfig]] = ModelConfig
    runtime: ClassVar[str] = "torch"  # the inference library it runs on: a key of shared.runtime.RUNTIMES
    gpu_dtype: ClassVar[str] = "float16"  # the dtype it loads in on a GPU (MODEL_DTYPE=auto)
    streams: ClassVar[bool] = False  # True: served by a generator handler (audio chunks via /stream)
    default_residency: ClassVar[Residency] = Residency.KEEP
    # The residencies setup() honours (KEEP and UNLOAD need nothing of it; OFFLOAD and SEQUENTIAL do).
    residencies: ClassVar[tuple[Residency, ...]] = (Residency.KEEP, Residency.UNLOAD)
    input_channels: ClassVar[int] = 1
    max_input_seconds: ClassVar[float] = 600.0  # the longest input audio a request may send, whichever field
    # Top-level aliases of the first output's fields, for clients of the model's earlier API:
    # result name -> the output fields to take it from, first present wins.
    first_output_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(self, target: LoadTarget, config: ConfigT, settings: Settings) -> None:
        self.model_dir = target.model_dir
        self.model_id = target.model_id
        self.device = target.device
        self.dtype = target.dtype
        self.residency = target.residency
        self.config = config  # the model's own variables, checked at start-up
        self.settings = settings  # the worker's: volume root for companion folders, caps

    @classmethod
    def name(cls) -> str:
        return cls.catalog.worker

    @classmethod
    def prepare(cls, model_dir: Path, config: ConfigT, settings: Settings) -> None:
        """Start-up checks beyond the model folder (companion folders, operator artifacts).

        Runs once when the worker starts, under every residency, so a problem is known before any job.
        """

    @classmethod
    def model_dir_variable(cls, config: ConfigT) -> Path | None:
        """The model's own variable naming its folder, read when MODEL_DIR is unset (MODEL_DIR wins)."""
        return None

    @classmethod
    def check_request(cls, request: RequestT, config: ConfigT) -> None:
        """Rules that depend on the endpoint's configuration, checked before any model loads."""

    @classmethod
    def batch_key(cls, request: RequestT) -> Hashable | None:
        """Requests with equal keys may be generated together by `predict_batch`; None: this one alone.

        Adapters that batch return what must match (length, sampling settings); the rest never batch.
        """
        return None

    @abstractmethod
    def setup(self) -> None:
        """Load weights from `model_dir` onto `device` in `dtype`; called once per residency."""

    def example_input(self) -> dict[str, Any]:
        """A short job this loaded checkpoint can run (the operator's volume check runs it): the worker's
        test_input.json, unless the checkpoint's vocabulary decides what a job may say."""
        return json.loads((HANDLERS / self.name() / "test_input.json").read_text())["input"]

    @property
    def input_sample_rate(self) -> int:
        """Rate that input audio is resampled to before `predict`."""
        raise NotImplementedError(f"{self.name()} takes no input audio")

    @abstractmethod
    def predict(self, request: RequestT, audio_inputs: dict[AudioLabel, Audio], job: JobContext) -> Prediction:
        """Generate the outputs; `audio_inputs` maps the labels of `request.input_audio()` to decoded audio."""

    def predict_batch(self, items: list[BatchItem]) -> list[Prediction | Exception]:
        """Several jobs whose `batch_key`s are equal, as one generation: one outcome per job, in order.

        Each job keeps its own seed (the result equals the job run alone), progress and stop; a job's
        own error or cancellation is its outcome and leaves the others running.
        """
        raise NotImplementedError(f"{self.name()} does not batch: its batch_key is None")


class BatchingAdapter(ModelAdapter[RequestT, ConfigT]):
    """A model whose jobs can generate together. `predict` is a batch of one, so a job runs the same code
    alone and batched: each job is checked (`check_job`), then the jobs that pass generate in one call."""

    @abstractmethod
    def check_job(self, item: BatchItem) -> None:
        """Raise InputError for a job this loaded model refuses (it fails alone; its batch runs on)."""

    @abstractmethod
    def generate_batch(self, items: list[BatchItem]) -> list[Prediction | Exception]:
        """Jobs of one batch key in one generation: one outcome per job (its prediction or its cancellation)."""

    def predict(self, request: RequestT, audio_inputs: dict[AudioLabel, Audio], job: JobContext) -> Prediction:
        (outcome,) = self.predict_batch([BatchItem(request, audio_inputs, job)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def predict_batch(self, items: list[BatchItem]) -> list[Prediction | Exception]:
        outcomes: dict[int, Prediction | Exception] = {}
        for index, item in enumerate(items):
            try:
                self.check_job(item)
            except InputError as exc:
                outcomes[index] = exc
        running = [index for index in range(len(items)) if index not in outcomes]
        if running:
            generated = self.generate_batch([items[index] for index in running])
            outcomes |= dict(zip(running, generated, strict=True))
        return [outcomes[index] for index in range(len(items))]
