"""Concurrent jobs batched vs the same jobs one by one, measured side by side in one run.

    python scripts/benchmark_batching.py <worker> [--jobs 8] [--repeats 3] [--volume .volume-bench] [--device cpu]

Builds the worker's bench-size random-weight model if missing and starts two workers on it: one with
MAX_CONCURRENCY=1 (jobs one after another, as without batching) and one with MAX_CONCURRENCY=<jobs>
(the micro-batcher groups them). Both get the same <jobs> requests (the baseline's job, one seed each),
all arriving at once. Prints, as medians over the repeats (the sides alternate):

  throughput: jobs per second batched / one by one
  latency:    when the slowest job (and the average job) finished, counted from the jobs' arrival

and checks each job's audio is the same on both sides (a job's seed, not its batch, decides its audio).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.build_tiny_models import build  # noqa: E402
from shared import workers  # noqa: E402
from shared.pipeline import Worker  # noqa: E402
from shared.settings import Residency, Settings  # noqa: E402


def one_by_one(worker: Worker, jobs: list[dict[str, Any]]) -> tuple[list[float], list[dict[str, Any]]]:
    started = time.perf_counter()
    finished, results = [], []
    for job in jobs:
        results.append(worker.run(job))
        finished.append(time.perf_counter() - started)
    return finished, results


def concurrently(worker: Worker, jobs: list[dict[str, Any]]) -> tuple[list[float], list[dict[str, Any]]]:
    finished = [0.0] * len(jobs)
    results: list[dict[str, Any]] = [{}] * len(jobs)
    started = time.perf_counter()

    def run(index: int) -> None:
        results[index] = worker.run(jobs[index])
        finished[index] = time.perf_counter() - started

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return finished, results


def _audio(result: dict[str, Any], output_dir: Path) -> np.ndarray:
    import soundfile

    assert "error" not in result, result
    return soundfile.read(output_dir / result["outputs"][0]["path"])[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("worker", choices=workers.worker_names())
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--volume", type=Path, default=Path(".volume-bench"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    model_id = workers.module(args.worker, "fixtures").TINY_MODELS[0].model_id_for("bench")
    if not workers.catalog(args.worker).model_folder(args.volume, model_id).is_dir():
        build(args.volume, args.worker, "bench")
    job_input = workers.module(args.worker, "baseline").BASELINE.job_input
    jobs = [{"id": f"job-{index}", "input": job_input | {"seed": 100 + index}} for index in range(args.jobs)]
    output_dir = Path(tempfile.mkdtemp(prefix="bench-batching-"))
    base = Settings(
        volume_root=args.volume, model_id=model_id, output_dir=output_dir, device=args.device, residency=Residency.KEEP
    )
    adapter = workers.adapter_class(args.worker)
    single = Worker(adapter, base)
    batching = Worker(adapter, base.model_copy(update={"max_concurrency": args.jobs, "batch_max_outputs": 64}))
    single.start()
    batching.start()
    one_by_one(single, jobs[:1])  # first-job allocations out of the way on both sides
    concurrently(batching, jobs[:2])

    sides = {"one by one": (single, one_by_one), "batched": (batching, concurrently)}
    slowest: dict[str, list[float]] = {name: [] for name in sides}
    average: dict[str, list[float]] = {name: [] for name in sides}
    last: dict[str, list[dict[str, Any]]] = {}
    for repeat in range(args.repeats):
        for name in sides if repeat % 2 == 0 else reversed(sides):
            worker, run = sides[name]
            finished, results = run(worker, jobs)
            slowest[name].append(max(finished))
            average[name].append(statistics.mean(finished))
            last[name] = results
    batch_sizes = sorted({result.get("batch", {}).get("jobs", 1) for result in last["batched"]})
    differences = [
        float(np.abs(_audio(one, output_dir) - _audio(other, output_dir)).max())
        for one, other in zip(last["one by one"], last["batched"], strict=True)
    ]

    median = statistics.median
    device = args.device if args.device == "cuda" else f"cpu, {os.cpu_count()} cores"
    print(f"model: {model_id}, {device}; {args.jobs} jobs of {job_input}, {args.repeats} repeats (medians)")
    print(f"batched: batch sizes {batch_sizes}; largest audio difference per job {max(differences):.2e}")
    for name in sides:
        print(
            f"{name:>10}: slowest job done after {median(slowest[name]):7.3f} s, "
            f"average job {median(average[name]):7.3f} s, {args.jobs / median(slowest[name]):.3f} jobs/s"
        )
    ratio = median(slowest["one by one"]) / median(slowest["batched"])
    print(f"throughput ratio batched / one by one: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
