"""How a worker meets RunPod: start-up (with its failure kept), the async bridge, the one-shot test run.

Every worker's entry point is `python -m handlers.<model>`, which calls `serve` with its adapter.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from shared.adapter import ModelAdapter
from shared.errors import WorkerError
from shared.logs import configure_logging, redact
from shared.pipeline import Emit, Worker
from shared.stop import StopSignal


class JobRunner(Protocol):
    def run(self, job: dict[str, Any], emit: Emit | None = None, stop: StopSignal | None = None) -> dict[str, Any]: ...


class StartupFailure:
    """A worker whose start-up failed: every job gets the same error, so the caller sees why.

    A process that exits instead is restarted by RunPod again and again, and shows the user nothing.
    """

    def __init__(self, error: str) -> None:
        self.error = error

    def run(self, job: dict[str, Any], emit: Emit | None = None, stop: StopSignal | None = None) -> dict[str, Any]:
        with logger.contextualize(job_id=str(job.get("id") or "local")):
            logger.error("refused: the worker did not start: {}", self.error)
        return {"error": self.error}


def start_worker(adapter_class: type[ModelAdapter]) -> Worker | StartupFailure:
    """A started worker, or the reason it could not start (bad variable, model folder, artifact, load)."""
    try:
        worker = Worker(adapter_class)
        worker.start()
        return worker
    except WorkerError as exc:
        message = str(exc)
    except Exception as exc:  # a load that fails in the library: kept the same way
        message = f"start-up failed ({type(exc).__name__}): {redact(str(exc))[:500]}"
    logger.error("start-up failed; every job will answer: {}", message)
    return StartupFailure(message)


async def _stop_and_wait(job: dict[str, Any], stop: StopSignal, generation: asyncio.Future) -> None:
    """After RunPod cancelled the job's task: stop the generation thread and wait until it let go of the
    model, so the next job neither starts beside it nor finds its memory still held."""
    stop.request()
    with logger.contextualize(job_id=str(job.get("id") or "local")):
        logger.info("cancel received: stopping at the next step")
        await asyncio.wait({generation})
        logger.info("cancelled job released the model")


def job_handler(runner: JobRunner) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        # Generation blocks; a thread keeps the SDK's event loop (heartbeats, the stop channel) responsive.
        stop = StopSignal()
        generation = asyncio.ensure_future(asyncio.to_thread(runner.run, job, None, stop))
        try:
            return await asyncio.shield(generation)
        except asyncio.CancelledError:
            await _stop_and_wait(job, stop, generation)
            raise

    return handler


def streaming_job_handler(
    runner: JobRunner, refresh_worker: Callable[[], None]
) -> Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]]:
    """A generator handler: audio items as the adapter produces them, then the result as the last item.

    The SDK reads a per-job `refresh_worker` only from plain handlers; `refresh_worker()` sets it for the
    whole worker instead (the SDK then stops the worker after this job).
    """

    async def handler(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def emit(item: dict[str, Any]) -> None:  # called from the generation thread
            loop.call_soon_threadsafe(items.put_nowait, item)

        stop = StopSignal()
        generation = asyncio.ensure_future(asyncio.to_thread(runner.run, job, emit, stop))
        # Runs after every item the thread emitted is queued: None marks the end of the stream.
        generation.add_done_callback(lambda _: items.put_nowait(None))
        try:
            while (item := await items.get()) is not None:
                yield item
        except asyncio.CancelledError:
            await _stop_and_wait(job, stop, generation)
            raise
        result = generation.result()
        if result.pop("refresh_worker", False):
            refresh_worker()
        yield result

    return handler


def _run_once(runner: JobRunner, streaming: bool, test_input: Path) -> int:
    """One job from --test_input '<json>', ./test_input.json or the worker's own, printed as JSON.

    The SDK's own one-shot mode cannot run generator handlers; this one runs every worker alike.
    """
    if "--test_input" in sys.argv:
        raw = sys.argv[sys.argv.index("--test_input") + 1]
    else:
        raw = (Path("test_input.json") if Path("test_input.json").is_file() else test_input).read_text()
    job = {"id": "local_test", **json.loads(raw)}
    streamed: list[dict[str, Any]] = []
    result = runner.run(job, streamed.append if streaming else None)
    if streamed:
        logger.info("streamed {} chunk(s)", len(streamed))
    print(json.dumps(result, indent=2), file=sys.__stdout__)  # the answer itself: its URLs stay usable
    return 1 if "error" in result else 0


def serve(adapter_class: type[ModelAdapter]) -> None:
    """RunPod's serverless loop, the local API server, or one test job.

    On RunPod (RUNPOD_WEBHOOK_GET_JOB set) or with --rp_serve_api, the SDK serves jobs. Otherwise the
    worker runs one job (see `_run_once`) and exits 0, or 1 if the job failed.
    """
    configure_logging()
    if not os.environ.get("RUNPOD_WEBHOOK_GET_JOB") and "--rp_serve_api" not in sys.argv:
        runner = start_worker(adapter_class)
        streaming = isinstance(runner, Worker) and runner.settings.stream_audio
        test_input = Path(inspect.getfile(adapter_class)).with_name("test_input.json")
        sys.exit(_run_once(runner, streaming, test_input))
    # Importing the SDK takes about 1.5 s (its debugger module waits on a child process that reads the
    # CPU's name): done while the model loads rather than before, and not at all for a one-shot run.
    with ThreadPoolExecutor(1, thread_name_prefix="sdk-import") as pool:
        sdk = pool.submit(importlib.import_module, "runpod")
        runner = start_worker(adapter_class)
        runpod = sdk.result()
    streaming = isinstance(runner, Worker) and runner.settings.stream_audio
    # The SDK asks before every job take how many jobs may run at once (it starts at 1).
    concurrency = runner.settings.max_concurrency if isinstance(runner, Worker) else 1
    config: dict[str, Any] = {"concurrency_modifier": lambda _current: concurrency}
    if not streaming:
        config["handler"] = job_handler(runner)
    else:
        # Not aggregated: the SDK would repeat every audio chunk in the job's output, which passes RunPod's
        # payload limits after about a minute of audio and is then dropped. Clients read /stream.
        config["return_aggregate_stream"] = False
        config["handler"] = streaming_job_handler(runner, lambda: config.update(refresh_worker=True))
    runpod.serverless.start(config)
