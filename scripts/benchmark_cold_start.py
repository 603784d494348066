"""Cold start, measured side by side in one run on the worker's bench-size random-weight model.

    python scripts/benchmark_cold_start.py <worker> [--repeats 3] [--volume .volume-bench] [--device cpu]

  start to first result:  a fresh worker process started as RunPod starts it (the SDK's job loop against
                          tests/runpod_platform.py, the job already queued) until its result is posted
                          / a fresh bare script (the baseline's imports, load and generate, as
                          handlers/<worker>/baseline.py calls the library) until its output is ready
  weight load:            the worker's load (adapter construction and setup) in a warm process
                          / reading the same weight files onto the device (safetensors) in that process

The worker's own log splits its side: process start to the first log line (imports), the load, the job.
Both sides read the same files with the page cache warm (a cold network volume adds the same read time to
both). Runs alternate between the sides; medians are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.build_tiny_models import build  # noqa: E402
from shared import workers  # noqa: E402
from tests.runpod_platform import RunPodPlatform  # noqa: E402

SEED = 1234
BARE = """
import json, sys, time
from pathlib import Path
started = float(sys.argv[3])
from shared import workers
case = workers.module(sys.argv[1], "baseline").BASELINE
imported = time.time()
loaded = case.load(Path(sys.argv[2]))
ready = time.time()
case.run(loaded, int(sys.argv[4]))
print(json.dumps({"imports": imported - started, "load": ready - imported, "job": time.time() - ready}), flush=True)
"""
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \|")


def _log_seconds(line: str) -> float | None:
    found = _LOG_TIME.match(line)
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() if found else None


def worker_start(worker: str, env: dict[str, str], job_input: dict[str, Any]) -> dict[str, float]:
    """Seconds from process start to the posted result, with the worker's own split from its log."""
    platform = RunPodPlatform()
    with tempfile.TemporaryDirectory(prefix="cold-start-") as folder:
        log = Path(folder) / "worker.log"
        job = platform.submit(job_input)
        started = time.time()
        with log.open("w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", f"handlers.{worker}"],
                cwd=REPO,
                env=env | platform.env() | {"OUTPUT_DIR": str(Path(folder) / "outputs")},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            posted = platform.result(job, timeout=600)
            total = time.time() - started
        finally:
            process.terminate()
            process.wait(timeout=30)
            platform.close()
        output = posted.body.get("output", {})
        assert "outputs" in output, posted.body
        text = log.read_text()
        first_log = next(seconds for line in text.splitlines() if (seconds := _log_seconds(line)) is not None)
        loaded = re.search(r"model loaded in ([\d.]+) s", text)
        assert loaded, text[-2000:]
        return {
            "total": total,
            "imports": first_log - started,
            "load": float(loaded.group(1)),
            "job": output["timings_s"]["total"],
        }


def bare_start(worker: str, folder: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", BARE, worker, str(folder), repr(started), str(SEED)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"total": time.time() - started}


def weight_load(worker: str, folder: Path, settings: Any, repeats: int) -> tuple[list[float], list[float], int]:
    """The worker's load vs safetensors reading the same files to the same device, alternating."""
    from safetensors.torch import load

    from shared.pipeline import Worker
    from shared.settings import Residency

    files = sorted(folder.rglob("*.safetensors"))
    worker_seconds, read_seconds = [], []
    device = "cuda" if settings.device == "cuda" else "cpu"
    for _ in range(repeats + 1):  # the first round warms the page cache and the imports
        fresh = Worker(workers.adapter_class(worker), settings.model_copy(update={"residency": Residency.KEEP}))
        with fresh.cache.use() as (_, info):
            worker_seconds.append(info.load_seconds)
        fresh.cache.unload()
        started = time.perf_counter()
        # Every byte read and placed (load_file on the CPU would only map the files).
        tensors = [{name: tensor.to(device) for name, tensor in load(path.read_bytes()).items()} for path in files]
        read_seconds.append(time.perf_counter() - started)
        del tensors, fresh
    return worker_seconds[1:], read_seconds[1:], sum(path.stat().st_size for path in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("worker", choices=workers.worker_names())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--volume", type=Path, default=Path(".volume-bench"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    volume = args.volume.resolve()
    model_id = workers.module(args.worker, "fixtures").TINY_MODELS[0].model_id_for("bench")
    folder = workers.catalog(args.worker).model_folder(volume, model_id)
    if not folder.is_dir():
        build(volume, args.worker, "bench")
    job_input = workers.module(args.worker, "baseline").BASELINE.job_input | {"seed": SEED}
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("BUCKET_", "AWS_", "RUNPOD_"))}
    env = clean | {
        "VOLUME_ROOT": str(volume),
        "MODEL_ID": model_id,
        "DEVICE": args.device,
        "MODEL_RESIDENCY": "keep",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO),
    }

    from shared.settings import Settings

    settings = Settings(volume_root=volume, model_id=model_id, device=args.device, output_dir=Path(tempfile.mkdtemp()))
    worker_load, file_read, weight_bytes = weight_load(args.worker, folder, settings, args.repeats)
    worker_runs, bare_runs = [], []
    bare_start(args.worker, folder, env)  # page cache and bytecode warm for both sides
    for repeat in range(args.repeats):
        if repeat % 2 == 0:
            worker_runs.append(worker_start(args.worker, env, job_input))
        bare_runs.append(bare_start(args.worker, folder, env))
        if repeat % 2 == 1:
            worker_runs.append(worker_start(args.worker, env, job_input))

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    device = args.device if args.device == "cuda" else f"cpu, {os.cpu_count()} cores"
    print(f"model: {model_id} ({weight_bytes / 1e6:.0f} MB of weights), {device}, {args.repeats} repeats (medians)")
    for name, runs in (("worker", worker_runs), ("bare", bare_runs)):
        parts = ", ".join(f"{key} {median(runs, key):.2f}" for key in ("imports", "load", "job"))
        print(f"{name:>7} start to first result {median(runs, 'total'):7.2f} s   ({parts})")
    print(f"        ratio worker/bare: {median(worker_runs, 'total') / median(bare_runs, 'total'):.3f}")
    load, read = statistics.median(worker_load), statistics.median(file_read)
    print(f"weight load {load:.3f} s   reading the same files to {args.device} {read:.3f} s   ratio {load / read:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
