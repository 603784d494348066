"""The job flow: validate -> fetch input audio -> load (cached) -> generate -> encode -> store -> result.

Error contract: anything wrong with the request, the volume or the destination returns
{"error": "<message>"} and the worker keeps serving. A CUDA fault or out-of-memory frees what it can,
returns an error and sets "refresh_worker" so RunPod replaces the worker after the job.
"""

from __future__ import annotations

import base64
import json
import pickle
import re
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from loguru import logger

from shared import audio as audio_codec
from shared import memory, storage
from shared.adapter import Attachment, BatchItem, JobContext, LoadTarget, ModelAdapter, Prediction
from shared.audio import Audio
from shared.batching import MicroBatcher
from shared.cuda import choose_device, host_facts
from shared.errors import ModelFilesError, SettingsError, StorageError, WorkerError
from shared.fetch import fetch_audio_bytes
from shared.logs import redact
from shared.model_cache import LoadInfo, ModelCache
from shared.progress import AudioStream, Progress
from shared.results import describe_output, first_output_aliases, parameters_used
from shared.runtime import Runtime, load_runtime
from shared.schemas import AudioLabel, JobRequest, parse_request
from shared.settings import ModelConfig, Residency, Settings, read_settings
from shared.stop import JobCancelled, StopSignal
from shared.volume import model_source, populate_command, resolve_model_dir

Emit = Callable[[dict[str, Any]], None]


def choose_dtype(settings: Settings, runtime: Runtime, gpu_dtype: str, device_kind: str) -> Any:
    """MODEL_DTYPE=auto is the model's GPU dtype on a GPU, float32 on CPU."""
    if settings.dtype != "auto":
        return runtime.dtype(settings.dtype)
    return runtime.dtype(gpu_dtype if device_kind == "cuda" else "float32")


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 4)


@dataclass(frozen=True)
class _Job:
    """One job's validated work, as it waits in the micro-batcher."""

    job_id: str
    request: JobRequest
    decoded: dict[AudioLabel, Audio]
    context: JobContext
    timer: _Timer
    submitted: float = field(default_factory=time.perf_counter)


class _Generated(NamedTuple):
    prediction: Prediction
    load_info: LoadInfo
    memory_before: float
    memory_loaded: float
    memory_peak: float
    batch_jobs: int  # jobs generated together with this one, itself included
    batch_outputs: int


class Worker:
    """One model's worker: its settings, its model cache under a residency policy, and the job flow.

    Constructing it checks every variable (shared and the model's own) and the locked parameters;
    `start` checks the volume and, unless the model is unloaded after each job, loads it.
    """

    def __init__(
        self, adapter_class: type[ModelAdapter], settings: Settings | None = None, config: ModelConfig | None = None
    ) -> None:
        self.adapter_class = adapter_class
        self.settings = settings if settings is not None else read_settings(Settings)
        self.config = config if config is not None else read_settings(adapter_class.config_model)
        self.name = adapter_class.name()
        self.model_id = self.settings.model_id or adapter_class.catalog.default_model_id
        self.runtime = load_runtime(adapter_class.runtime)
        # A GPU the runtime cannot use is a start-up error, never a silent fall-back to the CPU.
        self.device_kind = choose_device(self.settings.device, host_facts(self.runtime))
        self.residency = self.settings.residency or adapter_class.default_residency
        if self.residency not in adapter_class.residencies:
            raise SettingsError(
                f"MODEL_RESIDENCY={self.residency.value}: {self.name} does not support it; use "
                + " or ".join(residency.value for residency in adapter_class.residencies)
            )
        if self.settings.stream_audio and not adapter_class.streams:
            raise SettingsError(f"STREAM_AUDIO=1: {self.name} does not stream audio; leave STREAM_AUDIO unset")
        self.locked = self._check_locked(self.settings.locked_parameters)
        self.cache: ModelCache[ModelAdapter] = ModelCache(self._load_model, self.residency, self.runtime)
        self._prepared = False
        # Every model call (loads and batches) runs on this one thread, one at a time (a job cancelled by
        # RunPod holds the model until its next step): torch's CPU thread pool belongs to the thread that
        # calls it, and jobs run on other threads than the one that loaded the model measured 25-45%
        # slower on the CPU.
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        # With MAX_CONCURRENCY > 1, compatible jobs that arrive together generate as one batch.
        self.batcher: MicroBatcher[_Job] = MicroBatcher(
            lambda jobs: self._model_thread.submit(self._generate_batch, jobs).result(),
            self.settings.batch_window_ms / 1000,
            self.settings.max_concurrency,
            self.settings.batch_max_outputs,
        )

    def _check_locked(self, locked: dict[str, Any]) -> dict[str, Any]:
        fields = self.adapter_class.request_model.model_fields
        unknown = sorted(set(locked) - set(fields))
        if unknown:
            raise SettingsError(
                f"LOCKED_PARAMETERS: {', '.join(unknown)} is not a field of {self.name} requests "
                f"(fields: {', '.join(fields)})"
            )
        return locked

    def check_volume(self) -> Path:
        """The model folder, complete (at every load), and the adapter's own start-up checks (once)."""
        catalog = self.adapter_class.catalog
        model_dir = resolve_model_dir(
            self.name,
            self.model_id,
            self.settings.volume_root,
            catalog.required_files,
            catalog.weight_folders,
            self.settings.model_dir or self.adapter_class.model_dir_variable(self.config),
            catalog.models_folder,
            catalog.formats,
            catalog.names(self.model_id)[1:],
        )
        if not self._prepared:
            self.adapter_class.prepare(model_dir, self.config, self.settings)
            self._prepared = True
        return model_dir

    def start(self) -> None:
        """Start-up: check the volume under every residency (the load checks it); load now unless unloaded
        after each job."""
        if self.residency is Residency.UNLOAD:
            self.check_volume()
        else:
            self._model_thread.submit(self._load_now).result()

    def _load_now(self) -> None:
        with self.cache.use():
            pass

    def _load_model(self) -> ModelAdapter:
        model_dir = self.check_volume()
        dtype = choose_dtype(self.settings, self.runtime, self.adapter_class.gpu_dtype, self.device_kind)
        source = model_source(model_dir, self.settings.volume_root, self.settings.model_dir)
        logger.info("loading {} from {} on {} as {}", self.model_id, source, self.device_kind, dtype)
        device = self.runtime.device(self.device_kind)
        target = LoadTarget(model_dir, self.model_id, device, dtype, self.residency)
        adapter = self.adapter_class(target, self.config, self.settings)
        try:
            adapter.setup()
        except pickle.UnpicklingError as exc:
            # Pickled weights are read as tensors only (torch.load(weights_only=True)); say so, instead of
            # torch's advice to unpickle the file in full.
            named = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
            what = f"it calls {named.group(1)}" if named else "it is not a plain state dict"
            raise ModelFilesError(
                f"model folder {model_dir}: a pickled weight file holds more than tensors and is refused, never "
                f"unpickled ({what}); re-populate it from its publisher with: "
                f"{populate_command(self.name, self.model_id, self.settings.volume_root)}"
            ) from exc
        return adapter

    def run(self, job: dict[str, Any], emit: Emit | None = None, stop: StopSignal | None = None) -> dict[str, Any]:
        """Run one job; `emit` receives streamed audio items when the adapter streams; `stop` cancels it."""
        job_id = str(job.get("id") or "local")
        stream = AudioStream(emit, self.settings.mp3) if emit is not None and self.adapter_class.streams else None
        with logger.contextualize(job_id=job_id):
            try:
                return self._run(job_id, job.get("input"), Progress(job), stream, stop or StopSignal())
            except JobCancelled as exc:
                logger.info("job stopped: {} step(s) ran, {} after the cancel", exc.steps, exc.steps_after)
                return {"error": "job cancelled"}
            except WorkerError as exc:
                logger.warning("job refused: {}", exc)
                return {"error": str(exc)}
            except Exception as exc:
                if self.runtime.is_device_fault(exc):
                    logger.exception("GPU fault; asking RunPod to recycle this worker")
                    self.cache.unload()
                    return {
                        "error": f"GPU fault ({type(exc).__name__}: {redact(str(exc))[:300]}); "
                        "the worker will be replaced, retry the job",
                        "refresh_worker": True,
                    }
                logger.exception("job failed")
                return {"error": f"internal error ({type(exc).__name__}): {redact(str(exc))[:500]}"}
            finally:
                memory.release_memory(self.runtime)

    def _run(
        self, job_id: str, raw_input: Any, progress: Progress, stream: AudioStream | None, stop: StopSignal
    ) -> dict[str, Any]:
        timer = _Timer()
        settings = self.settings
        with timer.stage("validate"):
            if isinstance(raw_input, dict) and self.locked:
                raw_input = raw_input | self.locked  # the operator's values win over the request's
            request = parse_request(self.adapter_class.request_model, raw_input, settings.input_audio_max_bytes)
            self.adapter_class.check_request(request, self.config)
            destination = storage.choose_destination(
                settings.s3, request.s3_bucket, request.s3_key, request.s3_prefix, request.return_base64
            )
            storage.check_key_length(destination, self.name, job_id, request.output_count())
        with timer.stage("fetch_input"):
            decoded = {
                label: audio_codec.decode(
                    fetch_audio_bytes(source, str(label), settings), str(label), self.adapter_class.max_input_seconds
                )
                for label, source in request.input_audio().items()
            }
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        context = JobContext(seed, progress, stop, memory.PhaseLog(self.runtime), stream)
        key = None if stream is not None else self.adapter_class.batch_key(request)
        generated = self.batcher.submit(_Job(job_id, request, decoded, context, timer), key, request.output_count())
        prediction, load_info = generated.prediction, generated.load_info
        with timer.stage("encode"):
            encoded = [audio_codec.encode(audio, request.format, settings.mp3) for audio in prediction.outputs]
        with timer.stage("store"):
            data = [payload for payload, _ in encoded]
            locations = storage.store(destination, data, request.format, self.name, job_id, settings)
        for index, location in enumerate(locations):
            where = location.get("s3_uri") or location.get("path") and settings.output_dir / location["path"]
            logger.info("output {}: {}", index, where or "inline base64")
        timer.seconds["total"] = round(sum(timer.seconds.values()), 4)
        outputs = [
            describe_output(index, audio, payload, rate, request.format, location)
            for index, (audio, (payload, rate), location) in enumerate(
                zip(prediction.outputs, encoded, locations, strict=True)
            )
        ]
        result: dict[str, Any] = {
            "outputs": outputs,
            "model": {"name": self.name, "id": self.model_id, "loaded_this_job": load_info.loaded_now},
            "parameters": parameters_used(request, seed),
            "timings_s": timer.seconds,
            "memory_mib": {
                "kind": memory.memory_kind(self.runtime),
                "before_job": round(generated.memory_before, 1),
                "after_load": round(generated.memory_loaded, 1),
                "peak": round(generated.memory_peak, 1),
                "after_job": round(memory.current_mib(self.runtime), 1),
            },
        }
        if context.phases.records:
            result["memory_mib"]["phases"] = context.phases.records
        if generated.batch_jobs > 1:
            result["batch"] = {"jobs": generated.batch_jobs, "outputs": generated.batch_outputs}
        if prediction.details:
            result["details"] = prediction.details
        if self.locked:
            result["locked_parameters"] = self.locked
        aliases = first_output_aliases(outputs, self.adapter_class.first_output_fields)
        result |= aliases | prediction.response_fields
        return self._fit_under_limit(result, prediction.attachments, destination, job_id)

    def _fit_under_limit(
        self, result: dict[str, Any], attachments: dict[str, Attachment], destination: storage.Destination, job_id: str
    ) -> dict[str, Any]:
        """Attachments inline while the result stays under RESULT_MAX_BYTES, else beside the audio in S3;
        a result that still does not fit fails with the reason (RunPod would drop it without one)."""
        limit = self.settings.result_max_bytes
        details = result.setdefault("details", {}) if attachments else {}
        for name, attachment in attachments.items():
            inline = {"bytes": len(attachment.data), "base64": base64.b64encode(attachment.data).decode()}
            details[name] = attachment.fields | inline
        size = len(json.dumps(result))
        if size > limit and attachments:
            if destination.kind is not storage.DestinationKind.S3:
                names = ", ".join(f"details.{name}" for name in attachments)
                raise StorageError(
                    f"{names}: the result would be {size} bytes, over RESULT_MAX_BYTES={limit} (RunPod drops larger "
                    "results); configure S3 (BUCKET_NAME, BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, "
                    "BUCKET_SECRET_ACCESS_KEY) to receive it as a file, or send a shorter input"
                )
            for name, attachment in attachments.items():
                key = storage.attachment_key(destination, self.name, job_id, name, attachment.extension)
                location = storage.upload(
                    self.settings.s3, destination.bucket, key, attachment.data, attachment.content_type
                )
                details[name] = attachment.fields | {"bytes": len(attachment.data)} | location
                logger.info("details.{}: {} bytes uploaded to {}", name, len(attachment.data), location["s3_uri"])
            size = len(json.dumps(result))
        if size > limit:
            raise StorageError(
                f"result: {size} bytes, over RESULT_MAX_BYTES={limit} (RunPod drops larger results); "
                "ask for fewer or shorter outputs, or upload instead of return_base64"
            )
        logger.info("result: {} bytes", size)
        return result

    def _generate_batch(self, jobs: list[_Job]) -> list[_Generated | BaseException]:
        """Load (cached), then predict the jobs together, holding the model only while they run."""
        # On the model thread, which has no job: what the load and the adapter log is about all of them.
        with logger.contextualize(job_id="+".join(job.job_id for job in jobs)):
            return self._generate_batch_logged(jobs)

    def _generate_batch_logged(self, jobs: list[_Job]) -> list[_Generated | BaseException]:
        for job in jobs:  # for the model: behind other jobs, or for companions to batch with
            job.timer.seconds["wait"] = round(time.perf_counter() - job.submitted, 4)
        memory.reset_peak(self.runtime)
        memory_before = memory.current_mib(self.runtime)
        with self.cache.use() as (model, load_info):
            memory_loaded = memory.current_mib(self.runtime)
            items = [
                BatchItem(
                    job.request,
                    {
                        label: audio.resampled(model.input_sample_rate).with_channels(model.input_channels)
                        for label, audio in job.decoded.items()
                    },
                    job.context,
                )
                for job in jobs
            ]
            together = f" (a batch of {len(jobs)} jobs)" if len(jobs) > 1 else ""
            for job in jobs:
                job.timer.seconds["load"] = round(load_info.load_seconds, 4)
                with logger.contextualize(job_id=job.job_id):
                    logger.info("generation started{}", together)
            started = time.perf_counter()
            try:
                outcomes = self._predict(model, items)
            finally:
                seconds = round(time.perf_counter() - started, 4)
                for job in jobs:
                    job.timer.seconds["generate"] = seconds
                    with logger.contextualize(job_id=job.job_id):
                        logger.info("generation ended after {} step(s)", job.context.stop.steps)
            memory_peak = memory.peak_mib(self.runtime)
            del model  # the cache must hold the last reference, or unloading after the job frees nothing
        outputs = sum(job.request.output_count() for job in jobs)
        return [
            outcome
            if isinstance(outcome, BaseException)
            else _Generated(outcome, load_info, memory_before, memory_loaded, memory_peak, len(jobs), outputs)
            for outcome in outcomes
        ]

    def _predict(self, model: ModelAdapter, items: list[BatchItem]) -> list[Prediction | BaseException]:
        """One job: seeded and predicted alone. Several: the adapter's batch. A batch that fails as a whole
        (not the GPU) is split in halves that run again as batches, until the request that broke it fails
        alone: its batch-mates stay batched (one bad job among 8: batches of 4, 2 and 1 after the failed one,
        instead of 8 jobs one by one)."""
        if len(items) == 1:
            self.runtime.seed(items[0].job.seed)
            return [model.predict(items[0].request, items[0].audio_inputs, items[0].job)]
        try:
            return model.predict_batch(items)
        except Exception as exc:
            if self.runtime.is_device_fault(exc):
                raise
            logger.warning("a batch of {} failed ({}): running its halves apart", len(items), exc)
        half = len(items) // 2
        return [*self._predict_apart(model, items[:half]), *self._predict_apart(model, items[half:])]

    def _predict_apart(self, model: ModelAdapter, items: list[BatchItem]) -> list[Prediction | BaseException]:
        """Part of a failed batch: its failure is its jobs' outcome (only a job alone can fail as a whole here:
        a larger part splits again)."""
        try:
            return self._predict(model, items)
        except Exception as exc:
            if self.runtime.is_device_fault(exc):
                raise
            return [exc] * len(items)
