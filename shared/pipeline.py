"""The job pipeline: validate -> fetch input audio -> load (cached) -> generate -> encode -> store.

Error contract: anything wrong with the request, the volume or the destination returns
{"error": "<message>"} and the worker keeps serving. A CUDA fault or out-of-memory frees what it can,
returns an error and sets "refresh_worker" so RunPod replaces the worker after the job.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import runpod
import torch
from loguru import logger

from shared import audio as audio_codec
from shared import memory, storage
from shared.adapter import ModelAdapter
from shared.audio import Audio
from shared.errors import WorkerError
from shared.fetch import fetch_audio_bytes
from shared.logs import configure_logging, redact
from shared.model_cache import ModelCache
from shared.schemas import AUDIO_FORMATS, FILE_EXTENSIONS, JobRequest, parse_request
from shared.settings import Mp3Settings, Residency, Settings, SettingsError
from shared.volume import enforce_offline, resolve_model_dir

_PROGRESS_INTERVAL_S = 2.0
# Raw audio bytes per streamed item: 512 KiB is ~700 KB as base64, well under RunPod's 1 MB per chunk.
_STREAM_CHUNK_BYTES = 512 * 1024


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def _is_cuda_fault(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    return isinstance(exc, RuntimeError) and ("CUDA error" in str(exc) or "CUBLAS_STATUS" in str(exc))


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


class _ProgressReporter:
    """Progress and streamed audio of one job.

    Progress updates go to RunPod (throttled) when running there, and to the log everywhere. Audio
    chunks go to the stream of a generator handler, as base64 items well under RunPod's 1 MB limit.
    """

    def __init__(self, job: dict[str, Any], emit: Callable[[dict[str, Any]], None] | None, mp3: Mp3Settings) -> None:
        self._job = job
        self._on_runpod = bool(os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))
        self._last_sent = 0.0
        self._emit = emit
        self._chunks = 0
        self._mp3 = mp3

    def __call__(self, stage: str, fraction: float | None = None) -> None:
        update = {"stage": stage} if fraction is None else {"stage": stage, "progress": round(fraction, 3)}
        logger.info("progress: {}", update)
        now = time.monotonic()
        if self._on_runpod and now - self._last_sent >= _PROGRESS_INTERVAL_S:
            self._last_sent = now
            runpod.serverless.progress_update(self._job, update)

    @property
    def streaming(self) -> bool:
        return self._emit is not None

    def chunk(self, audio: Audio, stream_format: str) -> None:
        """Stream a piece of the output: raw PCM (`pcm_s16le`, exact) or self-contained `mp3` pieces."""
        if self._emit is None:
            return
        step = max(1, _STREAM_CHUNK_BYTES // (2 * audio.channels))  # frames per item at 16-bit PCM
        for start in range(0, audio.frames, step):
            piece = Audio(audio.samples[start : start + step], audio.sample_rate)
            if stream_format == "pcm_s16le":
                data, rate = audio_codec.pcm_s16le(piece), piece.sample_rate
            else:
                data, rate = audio_codec.encode(piece, "mp3", self._mp3)
            self._emit(
                {
                    "chunk": self._chunks,
                    "format": stream_format,
                    "sample_rate": rate,
                    "channels": piece.channels,
                    "frames": piece.frames,
                    "audio_base64": base64.b64encode(data).decode(),
                }
            )
            self._chunks += 1


class Worker:
    """One model's worker: holds the settings and the model cache, and runs jobs."""

    def __init__(self, adapter_class: type[ModelAdapter], settings: Settings | None = None) -> None:
        enforce_offline()
        self.settings = settings or Settings.from_env()
        self.adapter_class = adapter_class
        self.model_id = self.settings.model_id or adapter_class.default_model_id
        self.residency = self.settings.residency or adapter_class.default_residency
        if self.residency is Residency.OFFLOAD and not adapter_class.supports_offload:
            raise SettingsError(
                f"MODEL_RESIDENCY=offload: {adapter_class.name} does not support CPU offload; use keep or unload"
            )
        self.locked = self._check_locked(self.settings.locked_parameters)
        self.cache: ModelCache[ModelAdapter] = ModelCache(self._load_model, self.residency)

    def _check_locked(self, locked: dict[str, Any]) -> dict[str, Any]:
        fields = self.adapter_class.request_model.model_fields
        unknown = sorted(set(locked) - set(fields))
        if unknown:
            raise SettingsError(
                f"LOCKED_PARAMETERS: {', '.join(unknown)} is not a field of {self.adapter_class.name} requests "
                f"(fields: {', '.join(fields)})"
            )
        return locked

    def _device_and_dtype(self) -> tuple[torch.device, torch.dtype]:
        wanted = self.settings.device
        device = torch.device("cuda" if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()) else "cpu")
        if self.settings.dtype != "auto":
            return device, getattr(torch, self.settings.dtype)
        return device, self.adapter_class.gpu_dtype if device.type == "cuda" else torch.float32

    def _load_model(self) -> ModelAdapter:
        adapter_class = self.adapter_class
        model_dir = resolve_model_dir(
            adapter_class.name, self.model_id, self.settings, adapter_class.required_files, adapter_class.weight_folders
        )
        device, dtype = self._device_and_dtype()
        logger.info("loading {} from {} on {} as {}", self.model_id, model_dir, device, dtype)
        adapter = self.adapter_class(model_dir, self.model_id, device, dtype, self.settings)
        adapter.setup()
        return adapter

    def preload(self) -> None:
        """Load at start-up so the first job is warm; a missing model is reported by each job instead."""
        if self.residency is Residency.UNLOAD:
            return
        try:
            with self.cache.use():
                pass
        except WorkerError as exc:
            logger.error("preload failed, jobs will report it: {}", exc)

    def run(self, job: dict[str, Any], emit: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Run one job; `emit` receives streamed audio items when the adapter streams."""
        job_id = str(job.get("id") or "local")
        progress = _ProgressReporter(job, emit, self.settings.mp3)
        with logger.contextualize(job_id=job_id):
            try:
                return self._run(job_id, job.get("input"), progress)
            except WorkerError as exc:
                logger.warning("job refused: {}", exc)
                return {"error": str(exc)}
            except Exception as exc:
                if _is_cuda_fault(exc):
                    logger.exception("CUDA fault; asking RunPod to recycle this worker")
                    self.cache.unload()
                    return {
                        "error": f"GPU fault ({type(exc).__name__}: {redact(str(exc))[:300]}); "
                        "the worker will be replaced, retry the job",
                        "refresh_worker": True,
                    }
                logger.exception("job failed")
                return {"error": f"internal error ({type(exc).__name__}): {redact(str(exc))[:500]}"}
            finally:
                memory.release_memory()

    async def handler(self, job: dict[str, Any]) -> dict[str, Any]:
        # Generation blocks; a thread keeps the SDK's event loop (heartbeats, the local API) responsive.
        return await asyncio.to_thread(self.run, job)

    async def streaming_handler(self, job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Generator handler: yields audio items as the adapter produces them, then the result."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def emit(item: dict[str, Any]) -> None:  # called from the generation thread
            loop.call_soon_threadsafe(items.put_nowait, item)

        finished = asyncio.ensure_future(asyncio.to_thread(self.run, job, emit))
        # Runs after every item the thread emitted is queued: None marks the end of the stream.
        finished.add_done_callback(lambda _: items.put_nowait(None))
        while (item := await items.get()) is not None:
            yield item
        yield finished.result()

    def _run(self, job_id: str, raw_input: Any, progress: _ProgressReporter) -> dict[str, Any]:
        timer = _Timer()
        settings = self.settings
        with timer.stage("validate"):
            if isinstance(raw_input, dict) and self.locked:
                raw_input = raw_input | self.locked  # the operator's values win over the request's
            request = parse_request(self.adapter_class.request_model, raw_input, settings.input_audio_max_bytes)
            destination = storage.choose_destination(
                settings.s3, request.s3_bucket, request.s3_key, request.s3_prefix, request.return_base64
            )
        with timer.stage("fetch_input"):
            decoded = {
                label: audio_codec.decode(fetch_audio_bytes(source, label, settings), label)
                for label, source in request.input_audio().items()
            }
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        memory.reset_peak()
        memory_before = memory.current_mib()
        with self.cache.use() as (model, load_info):
            timer.seconds["load"] = round(load_info.load_seconds, 4)
            memory_loaded = memory.current_mib()
            audio_inputs = {
                name: audio.resampled(model.input_sample_rate).with_channels(model.input_channels)
                for name, audio in decoded.items()
            }
            seed_everything(seed)
            with timer.stage("generate"):
                prediction = model.predict(request, audio_inputs, progress)
            outputs = prediction.outputs
            memory_peak = memory.peak_mib()
            del model  # the cache must hold the last reference, or unloading after the job frees nothing
        with timer.stage("encode"):
            encoded = [audio_codec.encode(audio, request.format, settings.mp3) for audio in outputs]
        with timer.stage("store"):
            locations = self._store(destination, encoded, request.format, job_id)
        for index, location in enumerate(locations):
            logger.info("output {}: {}", index, location.get("s3_uri") or location.get("path") or "inline base64")
        timer.seconds["total"] = round(sum(timer.seconds.values()), 4)
        result = {
            "outputs": [
                self._describe_output(index, audio, data, rate, request.format, location)
                for index, (audio, (data, rate), location) in enumerate(zip(outputs, encoded, locations, strict=True))
            ],
            "model": {"name": self.adapter_class.name, "id": self.model_id, "loaded_this_job": load_info.loaded_now},
            "parameters": self._parameters_used(request, seed),
            "timings_s": timer.seconds,
            "memory_mib": {
                "kind": memory.memory_kind(),
                "before_job": round(memory_before, 1),
                "after_load": round(memory_loaded, 1),
                "peak": round(memory_peak, 1),
                "after_job": round(memory.current_mib(), 1),
            },
        }
        if prediction.details:
            result["details"] = prediction.details
        if self.locked:
            result["locked_parameters"] = self.locked
        return result | self.adapter_class.client_fields(request, result)

    def _store(
        self, destination: storage.Destination, encoded: list[tuple[bytes, int]], audio_format: str, job_id: str
    ) -> list[dict[str, str]]:
        content_type = AUDIO_FORMATS[audio_format]
        if destination.kind == "inline":
            return storage.inline([data for data, _ in encoded], self.settings.inline_max_bytes)
        locations = []
        for index, (data, _) in enumerate(encoded):
            key = storage.object_key(destination, self.adapter_class.name, job_id, index, FILE_EXTENSIONS[audio_format])
            if destination.kind == "s3":
                locations.append(storage.upload(self.settings.s3, destination.bucket, key, data, content_type))
            else:
                locations.append(storage.write_local(self.settings.output_dir, key, data))
        return locations

    @staticmethod
    def _describe_output(
        index: int, audio: Audio, data: bytes, rate: int, audio_format: str, location: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "index": index,
            **location,
            "format": audio_format,
            "content_type": AUDIO_FORMATS[audio_format],
            "bytes": len(data),
            "duration_seconds": round(audio.duration, 4),
            "sample_rate": rate,
            "channels": audio.channels,
        }

    @staticmethod
    def _parameters_used(request: JobRequest, seed: int) -> dict[str, Any]:
        used = request.model_dump(mode="json")
        used["seed"] = seed
        for label in request.input_audio():  # input audio can be megabytes of base64: not echoed back
            name, _, index = label.partition(".")
            if index:
                used[name][int(index)] = "<provided>"
            else:
                used[name] = "<provided>"
        return used


def _run_once(worker: Worker, test_input: Path) -> int:
    """One job from --test_input '<json>', ./test_input.json or the handler's own, printed as JSON.

    The SDK's own one-shot mode cannot run generator handlers; this one runs every handler alike.
    """
    if "--test_input" in sys.argv:
        raw = sys.argv[sys.argv.index("--test_input") + 1]
    else:
        raw = (Path("test_input.json") if Path("test_input.json").is_file() else test_input).read_text()
    job = {"id": "local_test", **json.loads(raw)}
    streamed = []
    result = worker.run(job, streamed.append if worker.adapter_class.streams else None)
    if streamed:
        logger.info("streamed {} chunk(s)", len(streamed))
    print(json.dumps(result, indent=2))
    return 1 if "error" in result else 0


def serve(adapter_class: type[ModelAdapter], test_input: Path) -> None:
    """Entry point of every handler: RunPod's serverless loop, the local API server, or one test job.

    On RunPod (RUNPOD_WEBHOOK_GET_JOB set) or with --rp_serve_api, the SDK serves jobs. Otherwise the
    worker runs one job (see `_run_once`) and exits 0, or 1 if the job failed.
    """
    configure_logging()
    worker = Worker(adapter_class)
    worker.preload()
    if not os.environ.get("RUNPOD_WEBHOOK_GET_JOB") and "--rp_serve_api" not in sys.argv:
        sys.exit(_run_once(worker, test_input))
    if adapter_class.streams:
        # Every yielded item also lands in the /run and /runsync output (a list), so non-streaming
        # requests get a one-item list holding the usual result.
        runpod.serverless.start({"handler": worker.streaming_handler, "return_aggregate_stream": True})
    else:
        runpod.serverless.start({"handler": worker.handler})
