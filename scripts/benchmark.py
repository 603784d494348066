"""Worker overhead, measured side by side in one run on the same model and inputs.

    python scripts/benchmark.py <worker> [--repeats 3] [--volume .volume-bench]

A streaming worker also gets the time to its first streamed chunk against the whole job; a worker that
unloads after each job gets its memory before load / after load / after unload.

Builds the worker's bench-size random-weight model (handlers/<worker>/fixtures.py: the real
architecture, wider and deeper than the test model) and prints two ratios against the worker's
baseline (handlers/<worker>/baseline.py: the bare library calls with the same settings and seed):

  warm:  the worker's whole job (validate, generate, encode, store) / the bare calls
  first: the first job of a fresh worker (load included) / bare load + the same calls

Runs alternate between the two sides and report medians, so drift (page cache, CPU clock) hits both.
Output goes to a temporary local folder (S3 upload time is the network's, not the worker's). Only the
worker named is imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.build_tiny_models import build  # noqa: E402
from shared import workers  # noqa: E402
from shared.pipeline import Worker  # noqa: E402
from shared.settings import Residency, Settings  # noqa: E402

SEED = 1234


def _timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("worker", choices=workers.worker_names())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--volume", type=Path, default=Path(".volume-bench"))
    args = parser.parse_args(argv)
    adapter = workers.adapter_class(args.worker)
    case = workers.module(args.worker, "baseline").BASELINE
    model_id = workers.module(args.worker, "fixtures").TINY_MODELS[0].model_id_for("bench")
    folder = workers.catalog(args.worker).model_folder(args.volume, model_id)
    if not folder.is_dir():
        build(args.volume, args.worker, "bench")
    job = {"id": "bench", "input": case.job_input | {"seed": SEED}}
    output_dir = Path(tempfile.mkdtemp(prefix="bench-outputs-"))
    # Residency keep on both sides of the ratio (the bare side keeps its model); ACE-Step's unload
    # default is measured separately below.
    settings = Settings(
        volume_root=args.volume, model_id=model_id, output_dir=output_dir, device="cpu", residency=Residency.KEEP
    )

    def handler_first_job() -> Worker:
        worker = Worker(adapter, settings)
        result = worker.run(job)
        assert "error" not in result, result
        return worker

    def bare_first_job():
        loaded = case.load(folder)
        case.run(loaded, SEED)
        return loaded

    case.load(folder)  # page cache and lazy imports warm for both sides
    first_handler, first_bare, warm_handler, warm_bare = [], [], [], []
    stages: dict[str, list[float]] = {}
    samples = {}
    for repeat in range(args.repeats):
        # Alternate which side goes first, so neither always inherits the other's warm allocator.
        if repeat % 2 == 0:
            seconds, worker = _timed(handler_first_job)
            first_handler.append(seconds)
        seconds, loaded = _timed(bare_first_job)
        first_bare.append(seconds)
        if repeat % 2 == 1:
            seconds, worker = _timed(handler_first_job)
            first_handler.append(seconds)
        for _ in range(args.repeats):
            seconds, result = _timed(worker.run, job)
            warm_handler.append(seconds)
            for stage, stage_seconds in result["timings_s"].items():
                stages.setdefault(stage, []).append(stage_seconds)
            samples["handler"] = round(result["outputs"][0]["duration_seconds"] * result["outputs"][0]["sample_rate"])
            seconds, waveform = _timed(case.run, loaded, SEED)
            warm_bare.append(seconds)
            samples["bare"] = waveform.shape[-1]
        del worker, loaded

    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6
    median = statistics.median
    print(f"model: {model_id} ({size:.0f} MB on disk), cpu, {os.cpu_count()} cores")
    print(f"same work on both sides: {samples['handler']} samples (handler) vs {samples['bare']} (bare)")
    print(f"repeats: {args.repeats} cold, {args.repeats**2} warm (medians)")
    print(f"warm   handler job     {median(warm_handler):7.3f} s   bare calls           {median(warm_bare):7.3f} s")
    print(f"       ratio handler/bare: {median(warm_handler) / median(warm_bare):.3f}")
    print("       handler stages: " + ", ".join(f"{k} {median(v):.3f}" for k, v in stages.items()))
    print(f"first  handler job     {median(first_handler):7.3f} s   bare load + calls    {median(first_bare):7.3f} s")
    print(f"       ratio handler/bare: {median(first_handler) / median(first_bare):.3f}")
    if adapter.streams:
        _time_to_first_chunk(worker_factory=lambda: Worker(adapter, settings), job=job, repeats=args.repeats)
    if adapter.default_residency is Residency.UNLOAD:
        _memory_across_unload(Worker(adapter, settings.model_copy(update={"residency": Residency.UNLOAD})), job)
    return 0


def _memory_across_unload(worker: Worker, job: dict[str, Any]) -> None:
    """Unload-after-job: memory before the load, after it, at the job's peak, and after the unload."""
    worker.run(job)  # one-time allocations (imports, thread pools) out of the way
    memory = worker.run(job)["memory_mib"]
    print(
        f"unload {memory['kind']}: before load {memory['before_job']:.0f} MiB, after load {memory['after_load']:.0f}"
        f", peak {memory['peak']:.0f}, after unload {memory['after_job']:.0f}"
    )


def _time_to_first_chunk(worker_factory: Callable[[], Worker], job: dict[str, Any], repeats: int) -> None:
    """Streaming: how soon the first audio chunk is out, against the whole streamed job, same run."""
    worker = worker_factory()
    streaming_job = {"id": "bench-stream", "input": job["input"] | {"stream": True}}
    worker.run(streaming_job, lambda item: None)  # warm
    first, whole = [], []
    for _ in range(repeats**2):
        arrivals: list[float] = []
        started = time.perf_counter()
        worker.run(streaming_job, lambda item, arrivals=arrivals: arrivals.append(time.perf_counter()))
        whole.append(time.perf_counter() - started)
        first.append(arrivals[0] - started)
    median = statistics.median
    print(f"stream first chunk     {median(first):7.3f} s   whole streamed job   {median(whole):7.3f} s")
    print(f"       ratio first-chunk/whole: {median(first) / median(whole):.3f} ({len(arrivals)} chunks)")


if __name__ == "__main__":
    sys.exit(main())
