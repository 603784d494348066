"""Size every worker on this machine's GPU (or its CPU): one report, Markdown and JSON, README estimates beside.

    python scripts/gpu_check.py [--workers A,B] [--out DIR] [--volume-root DIR] [--device auto|cuda|cpu]
                                [--skip tests,measure,batching,residency] [--budget SECONDS]

`make gpu-check` runs it (WORKERS=, OUT=, VOLUME_ROOT=, DEVICE=, SKIP=, BUDGET=, WHEELHOUSE=), on the host's own
CUDA torch when it has one (scripts/gpu_check_env.py). Workers are found in handlers/*/; what applies to each is
read from its adapter (runtime, residencies, whether it batches) and its fixtures (GPU_CHECK: the size it is
measured at). Every part runs in a subprocess of its own with its own timeout, inside one overall budget; a
part that fails, hangs or does not fit is recorded in the report, and the rest go on.

Parts, per worker (DEVICE=cpu runs the same on the tiny models, every figure labelled CPU):
  tests      `pytest -m gpu` on its GPU tests (tests/test_gpu.py's cases for it, handlers/<worker>/tests):
             each test passed, failed or skipped
  build      the model it is measured on: the default checkpoint's published architecture with random weights
             (fixtures GPU_CHECK size; `bench` where a worker declares none), built once into .cache/, or the
             real weights when VOLUME_ROOT holds the default checkpoint. Builds run on the CPU beside the tests.
  measure    through the worker's own pipeline (shared.pipeline.Worker, residency keep): load time; device
             memory after load, peak during the standard job, after it, after unload; real-time factor (seconds
             of audio per second of job); the first job against a warm one. A worker on ONNX also reports the
             execution provider of each graph (skipped with the reason without onnxruntime's CUDA build).
  batching   where the adapter batches: 8 jobs at once, batched vs one by one (scripts/benchmark_batching.py)
  residency  where the adapter offers residencies beyond keep/unload (offload, sequential): idle and peak
             memory of each beside keep's
The standard job: the worker's baseline job (handlers/<worker>/baseline.py, what the benchmarks run) on random
weights at GPU size, its contract job (the smallest) on the tiny models, the checkpoint's example job on real
weights; the report states each job's input and the audio seconds it made.

Budget (default run, one H100, every worker): 480 s for the parts, so that with the venv step before it
(`make gpu-check`, ~30-60 s from a wheelhouse) it stays under 9 minutes. Per part: host 60 s, plan 120 s (every
adapter imported), tests 120 s a worker, build 300 s (CPU lane, beside the tests), measure 150 s, batching 120 s,
residency 150 s; each is cut to what is left of the budget, and a part that finds under 10 s left is skipped as
over budget. Sizes: full (the published architecture) where fixtures declare it, else bench; jobs: the
baselines' (2-4 s of audio, short step counts). SKIP=tests,batching,residency leave parts out. A budget, not a
measurement: no GPU has run it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PARTS = ("tests", "build", "measure", "batching", "residency")
SKIPPABLE = ("tests", "measure", "batching", "residency")
# Seconds per part on a GPU (each also cut to what is left of the overall budget).
TIMEOUTS = {"host": 60, "plan": 120, "tests": 120, "build": 300, "measure": 150, "batching": 120, "residency": 150}
DEFAULT_BUDGET = 480
MIN_PART_SECONDS = 10
BATCH_JOBS = 8
ONNX_RUNTIME = "onnxruntime"  # shared.runtime.RUNTIMES key of the ONNX workers: they report their providers
RESULT_ENV = "GPU_CHECK_RESULT"
DEFAULT_VOLUME = REPO / ".cache" / "gpu-check-volume"


# ---------------------------------------------------------------- running parts in subprocesses


@dataclass
class PartOutcome:
    part: str
    worker: str | None
    status: str  # ok, skipped, failed, timeout
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # why skipped or failed
    log_tail: str = ""


def run_part(
    part: str, worker: str | None, command: list[str], timeout: float, log_dir: Path, env: dict[str, str] | None = None
) -> PartOutcome:
    """Run one part's command in a new process group; kill the group at the timeout. The command writes its
    figures as JSON to the file named by $GPU_CHECK_RESULT (a `{"skipped": reason}` object marks it skipped)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{part}-{worker}" if worker else part
    log_path, result_path = log_dir / f"{stem}.log", log_dir / f"{stem}.json"
    result_path.unlink(missing_ok=True)
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=(env or os.environ) | {RESULT_ENV: str(result_path), "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its own group: a timeout kills pytest's children too
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
    seconds = round(time.perf_counter() - started, 2)
    tail = _tail(log_path)
    data = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if code is None:
        return PartOutcome(part, worker, "timeout", seconds, data, f"no result after {timeout:.0f} s: killed", tail)
    if code != 0:
        return PartOutcome(part, worker, "failed", seconds, data, f"exit status {code}: {_last_error(tail)}", tail)
    if "skipped" in data:
        return PartOutcome(part, worker, "skipped", seconds, data, str(data["skipped"]), tail)
    return PartOutcome(part, worker, "ok", seconds, data, "", tail)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def _last_error(tail: str) -> str:
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b", line)]
    return (errors or lines or ["no output"])[-1][:300]


class Budget:
    """One deadline for the whole run: each part's timeout is cut to what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, part: str, scale: float = 1.0) -> float | None:
        """The part's timeout, or None when too little is left to start it."""
        left = self.left()
        return None if left < MIN_PART_SECONDS else min(TIMEOUTS[part] * scale, left)


def skipped(part: str, worker: str | None, reason: str) -> PartOutcome:
    return PartOutcome(part, worker, "skipped", 0.0, reason=reason)


# ---------------------------------------------------------------- the README's estimates, read once


def _table_rows(lines: list[str]) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]


def _cell(rows: list[list[str]], column: str, first: str) -> str | None:
    """The cell under the header naming `column`, in the row whose first cell contains `first`."""
    if not rows:
        return None
    header = rows[0]
    index = next((i for i, name in enumerate(header) if name.startswith(column)), None)
    for row in rows[2:]:
        if index is not None and index < len(row) and first in row[0]:
            return row[index]
    return None


def _tables(text: str) -> list[list[list[str]]]:
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(_table_rows(current))
            current = []
    return tables


def read_estimates(worker_names: list[str], default_ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every estimate the README pages give, by worker, each with where it was read:
    - gpu_memory: README.md's endpoint table (generated from deploy/*.json), column "GPU memory";
    - checkpoint_memory: handlers/<worker>/README.md's checkpoint table, the default checkpoint's "GPU memory";
    - batching_ratio: README.md "Concurrent jobs": the batched/one-by-one throughput measured on this project's
      2-core CPU with bench models (the only batching figure it has; on a GPU it is expected higher);
    - onnx_provider: README.md "Endpoint settings": onnxruntime-gpu's CUDA build, so CUDAExecutionProvider.
    The README gives no real-time factor or load time for a GPU: those figures have no estimate beside them."""
    readme = (REPO / "README.md").read_text()
    estimates: dict[str, dict[str, Any]] = {worker: {} for worker in worker_names}
    endpoint = re.search(r"<!-- endpoint-table:.*?-->\n(.*?)<!-- endpoint-table: end -->", readme, re.S)
    rows = _table_rows(endpoint.group(1).splitlines()) if endpoint else []
    for worker in worker_names:
        text = _cell(rows, "GPU memory", f"`{worker}`")
        if text:
            estimates[worker]["gpu_memory"] = {"text": text, "source": "README.md, Endpoint settings table"}
        page = REPO / "handlers" / worker / "README.md"
        for table in _tables(page.read_text()) if page.is_file() else []:
            if table and table[0][0] == "MODEL_ID" and any(name.startswith("GPU memory") for name in table[0]):
                text = _cell(table, "GPU memory", f"`{default_ids[worker]}`")
                if text:
                    source = f"handlers/{worker}/README.md, checkpoint table, {default_ids[worker]}"
                    estimates[worker]["checkpoint_memory"] = {"text": text, "source": source}
    # The model names of the first table ("| `worker` | Model (...) |") tie the batching sentence to workers.
    models = {}
    for row in _tables(readme)[0][2:] if _tables(readme) else []:
        if len(row) > 1 and row[0].strip("`") in worker_names:
            models[row[0].strip("`")] = row[1].split()[0]
    batching = re.search(r"Measured with `make benchmark-batching.*?(?:\n\n|$)", readme, re.S)
    for name, ratio in re.findall(
        r"([\w-]+) \([^)]*\) (?:\*\*)?(\d+(?:\.\d+)?)x", batching.group(0) if batching else ""
    ):
        for worker, model in models.items():
            if model.lower().startswith(name.lower()):
                estimates[worker]["batching_ratio"] = {
                    "value": float(ratio),
                    "text": f"{ratio}x (CPU, 2 cores, bench models)",
                    "source": "README.md, Concurrent jobs (make benchmark-batching)",
                }
    provider = "CUDAExecutionProvider" if "onnxruntime-gpu" in readme else None
    for worker in worker_names:
        if provider:
            estimates[worker]["onnx_provider"] = {
                "text": f"{provider} on a GPU (CPUExecutionProvider on the CPU)",
                "source": "README.md, Endpoint settings (the image's onnxruntime-gpu, CUDA 13.0)",
            }
    return estimates


# ---------------------------------------------------------------- what each worker is measured on


@dataclass(frozen=True)
class Plan:
    worker: str
    device: str  # cuda or cpu
    runtime: str
    batches: bool
    residencies: tuple[str, ...]  # the residencies beyond keep and unload it offers
    default_model_id: str
    volume: str
    model_id: str
    size: str  # tiny, bench, full, or "real" (the volume's weights)
    architecture: str  # what the random weights stand for
    job: dict[str, Any] | None  # None: the checkpoint's own example job (real weights)
    job_source: str
    build: bool  # the random model must be built first


def plan_worker(worker: str, device: str, volume_root: Path | None, volume: Path) -> Plan:
    from shared import workers
    from shared.adapter import ModelAdapter
    from shared.settings import Residency

    adapter = workers.adapter_class(worker)
    fixtures = workers.module(worker, "fixtures")
    catalog = workers.catalog(worker)
    batches = adapter.batch_key.__func__ is not ModelAdapter.batch_key.__func__
    extra = tuple(r.value for r in adapter.residencies if r not in (Residency.KEEP, Residency.UNLOAD))
    common = {
        "worker": worker,
        "device": device,
        "runtime": adapter.runtime,
        "batches": batches,
        "residencies": extra,
        "default_model_id": catalog.default_model_id,
    }
    if volume_root is not None and catalog.model_folder(volume_root, catalog.default_model_id).is_dir():
        return Plan(
            **common,
            volume=str(volume_root),
            model_id=catalog.default_model_id,
            size="real",
            architecture=catalog.default_model_id,
            job=None,
            job_source="the checkpoint's example job (adapter.example_input)",
            build=False,
        )
    tiny = fixtures.TINY_MODELS[0]
    declared = getattr(fixtures, "GPU_CHECK", {})
    if device == "cpu":
        size, architecture = "tiny", "tiny random-weight model of the real architecture"
        job, job_source = fixtures.CONTRACT.job_input, f"handlers/{worker}/fixtures.py CONTRACT (the smallest job)"
    else:
        size = declared.get("size", "bench")
        architecture = (
            f"{declared['architecture']}'s published architecture"
            if "architecture" in declared
            else f"bench size: no full-size builder (GPU_CHECK in handlers/{worker}/fixtures.py)"
        )
        job = workers.module(worker, "baseline").BASELINE.job_input
        job_source = f"handlers/{worker}/baseline.py BASELINE"
    model_id = tiny.model_id if size == "tiny" else tiny.model_id_for(size)
    return Plan(
        **common,
        volume=str(volume),
        model_id=model_id,
        size=size,
        architecture=architecture,
        job=job,
        job_source=job_source,
        build=not (catalog.model_folder(volume, model_id) / ".gpu-check-built").is_file(),
    )


# ---------------------------------------------------------------- the parts themselves (run as subprocesses)


def part_plan(args: argparse.Namespace) -> None:
    """Each worker's plan (its adapter imported here, not in the orchestrator: an import that fails or hangs on
    this host's libraries is this part's outcome); a worker that cannot be planned is named with its error."""
    import traceback

    plans, errors = {}, {}
    volume_root = Path(args.volume_root) if args.volume_root else None
    for worker in args.worker.split(","):
        try:
            plans[worker] = asdict(plan_worker(worker, args.device, volume_root, Path(args.volume)))
        except Exception as exc:  # noqa: BLE001 - any import or setup error is reported, the others go on
            traceback.print_exc()
            errors[worker] = f"{type(exc).__name__}: {exc}"[:500]
    _write_result({"plans": plans, "errors": errors})


def _write_result(data: dict[str, Any]) -> None:
    Path(os.environ[RESULT_ENV]).write_text(json.dumps(data, indent=2, default=str))


def part_host(args: argparse.Namespace) -> None:
    import platform

    data: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable}
    pins = _pins(REPO / "shared" / "constraints.txt")
    data["torch_pin"] = pins.get("torch")
    try:
        import torch

        from shared.cuda import host_facts
        from shared.torch_runtime import RUNTIME

        facts = host_facts(RUNTIME)
        data |= {
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
            "torch_file": str(Path(torch.__file__).parent),
            "gpus": [{"name": gpu.name, "capability": gpu.capability} for gpu in facts.gpus],
            "driver": facts.driver,
            "cuda_available": torch.cuda.is_available(),
        }
        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            data["gpu_memory_mib"] = {"total": round(total / 2**20), "free": round(free / 2**20)}
    except ImportError as exc:
        data["torch"] = f"not importable: {exc}"
    if data.get("torch_pin") and isinstance(data.get("torch"), str):
        data["torch_matches_pin"] = data["torch"].split("+")[0] == data["torch_pin"]
    try:
        import onnxruntime

        data["onnxruntime"] = {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}
    except ImportError as exc:
        data["onnxruntime"] = {"version": None, "error": str(exc)}
    _write_result(data)


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if found:
            pins[found.group(1).lower().replace("_", "-")] = found.group(2)
    return pins


def part_build(args: argparse.Namespace) -> None:
    import torch

    from shared import workers
    from shared.volume import make_readable

    tiny = workers.module(args.worker, "fixtures").TINY_MODELS[0]
    catalog = workers.catalog(args.worker)
    target = catalog.model_folder(Path(args.volume), args.model_id)
    worker_folder = Path(args.volume) / args.worker
    torch.manual_seed(0)
    started, since = time.perf_counter(), time.time() - 1
    tiny.build(target, args.size)
    make_readable(worker_folder)
    (target / ".gpu-check-built").write_text(args.size + "\n")
    _write_result(
        {
            "seconds": round(time.perf_counter() - started, 2),
            "folder": str(target),
            # what the build wrote, beside the model folder too (e.g. an audio tokenizer in a folder of its own)
            "bytes": _bytes_written(worker_folder, since),
        }
    )


def _bytes_written(folder: Path, since: float) -> int:
    """The size of the files under `folder` written since `since` (a rebuild over a killed build's files too)."""
    files = [path.stat() for path in folder.rglob("*") if path.is_file()]
    return sum(stat.st_size for stat in files if stat.st_mtime >= since)


def _settings(args: argparse.Namespace, output_dir: Path, **update: Any):
    from shared.settings import Residency, Settings

    fields = {
        "volume_root": Path(args.volume),
        "model_id": args.model_id,
        "output_dir": output_dir,
        "device": args.device,
        "residency": Residency.KEEP,
    }
    return Settings(**(fields | update))


def _onnx_gpu_missing(adapter: type, device: str) -> str | None:
    """Why an ONNX worker cannot be measured on the GPU here (None: it can, or it runs on the CPU)."""
    if adapter.runtime != ONNX_RUNTIME or device != "cuda":
        return None
    from shared.runtime import load_runtime

    facts = load_runtime(adapter.runtime).library()
    if facts.cuda is None:
        return f"{facts.build} is a CPU build (no CUDAExecutionProvider): install onnxruntime-gpu to measure it"
    if not facts.sees_gpu:
        return (
            f"{facts.build} (CUDA {facts.cuda}) sees no GPU here: its CUDA {facts.cuda.split('.')[0]} libraries "
            "(NVIDIA's cuda-runtime, cublas, cudnn wheels, or the host's) are missing or the driver is older"
        )
    return None


def _sessions(root: Any, depth: int = 4) -> list[Any]:
    """The onnxruntime sessions a loaded adapter holds, found by walking its attributes."""
    import onnxruntime

    found, seen, frontier = [], set(), [root]
    for _ in range(depth):
        following = []
        for item in frontier:
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, onnxruntime.InferenceSession):
                found.append(item)
                continue
            children = (
                list(item.values())
                if isinstance(item, dict)
                else list(item)
                if isinstance(item, list | tuple)
                else list(vars(item).values())
                if hasattr(item, "__dict__") and not isinstance(item, type)
                else []
            )
            following.extend(child for child in children if not isinstance(child, str | bytes | int | float))
        frontier = following
    return found


def _audio_seconds(result: dict[str, Any]) -> float:
    return round(sum(output.get("duration_seconds", 0.0) for output in result.get("outputs", [])), 3)


def _job(args: argparse.Namespace, worker: Any, seed: int, index: int = 0) -> dict[str, Any]:
    job_input = json.loads(args.job) if args.job else None
    if job_input is None:
        with worker.cache.use() as (model, _):
            job_input = model.example_input()
    return {"id": f"gpu-check-{index}", "input": job_input | {"seed": seed}}


def part_measure(args: argparse.Namespace) -> None:
    from shared import memory, workers
    from shared.pipeline import Worker

    adapter = workers.adapter_class(args.worker)
    missing = _onnx_gpu_missing(adapter, args.device)
    if missing:
        _write_result({"skipped": missing})
        return
    output_dir = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    started = time.perf_counter()
    worker = Worker(adapter, _settings(args, output_dir))
    runtime = worker.runtime
    before = memory.current_mib(runtime)
    worker.start()
    load_seconds = time.perf_counter() - started
    after_load = memory.current_mib(runtime)
    data: dict[str, Any] = {
        "memory_kind": memory.memory_kind(runtime),
        "load_seconds": round(load_seconds, 3),
        "memory_mib": {"before_load": round(before, 1), "after_load": round(after_load, 1)},
    }
    job = _job(args, worker, seed=1)
    data["job"] = job["input"]
    for name in ("first", "warm"):
        started = time.perf_counter()
        result = worker.run(job)
        seconds = time.perf_counter() - started
        if "error" in result:
            raise RuntimeError(f"{name} job failed: {result['error']}")
        audio = _audio_seconds(result)
        data[name] = {
            "seconds": round(seconds, 3),
            "audio_seconds": audio,
            "rtf": round(audio / seconds, 3) if seconds else None,
            "generate_seconds": result["timings_s"].get("generate"),
            "peak_mib": result["memory_mib"]["peak"],
            "after_job_mib": result["memory_mib"]["after_job"],
        }
    data["memory_mib"] |= {"peak": data["warm"]["peak_mib"], "after_job": data["warm"]["after_job_mib"]}
    if adapter.runtime == ONNX_RUNTIME:
        with worker.cache.use() as (model, _):
            sessions = _sessions(model)
            data["onnx_providers"] = sorted({session.get_providers()[0] for session in sessions})
            data["onnx_sessions"] = len(sessions)
            del model
    worker.cache.unload()
    memory.release_memory(runtime)
    data["memory_mib"]["after_unload"] = round(memory.current_mib(runtime), 1)
    _write_result(data)


def part_batching(args: argparse.Namespace) -> None:
    import statistics

    from scripts.benchmark_batching import concurrently, one_by_one
    from shared import workers
    from shared.pipeline import Worker

    adapter = workers.adapter_class(args.worker)
    output_dir = Path(tempfile.mkdtemp(prefix="gpu-check-batching-"))
    base = _settings(args, output_dir)
    single = Worker(adapter, base)
    batching = Worker(adapter, base.model_copy(update={"max_concurrency": args.jobs, "batch_max_outputs": 64}))
    single.start()
    batching.start()
    jobs = [_job(args, single, seed=100 + index, index=index) for index in range(args.jobs)]
    one_by_one(single, jobs[:1])  # first-job allocations out of the way on both sides
    concurrently(batching, jobs[:2])
    sides = {"one_by_one": (single, one_by_one), "batched": (batching, concurrently)}
    runs: dict[str, dict[str, Any]] = {}
    for name, (worker, run) in sides.items():
        finished, results = run(worker, jobs)
        errors = [result["error"] for result in results if "error" in result]
        if errors:
            raise RuntimeError(f"{name}: {errors[0]}")
        runs[name] = {
            "slowest_seconds": round(max(finished), 3),
            "mean_seconds": round(statistics.mean(finished), 3),
            "jobs_per_second": round(len(jobs) / max(finished), 3),
            "batch_sizes": sorted({result.get("batch", {}).get("jobs", 1) for result in results}),
            "peak_mib": max(result["memory_mib"]["peak"] for result in results),
        }
    ratio = runs["one_by_one"]["slowest_seconds"] / runs["batched"]["slowest_seconds"]
    _write_result({"jobs": len(jobs), "job": jobs[0]["input"], **runs, "throughput_ratio": round(ratio, 3)})


def part_residency(args: argparse.Namespace) -> None:
    from shared import memory, workers
    from shared.pipeline import Worker
    from shared.settings import Residency

    adapter = workers.adapter_class(args.worker)
    data: dict[str, Any] = {}
    for name in args.residencies.split(","):
        output_dir = Path(tempfile.mkdtemp(prefix="gpu-check-residency-"))
        worker = Worker(adapter, _settings(args, output_dir, residency=Residency(name)))
        worker.start()
        idle = memory.current_mib(worker.runtime)
        job = _job(args, worker, seed=1)
        worker.run(job)  # one-time allocations (kernels, workspaces) out of the way
        result = worker.run(job)
        if "error" in result:
            raise RuntimeError(f"{name}: {result['error']}")
        phases = {
            f"{phase['phase']}{':' + phase['part'] if phase.get('part') else ''}": phase["after_mib"]
            for phase in result["memory_mib"].get("phases", [])
        }
        data[name] = {
            "idle_mib": round(idle, 1),
            "peak_mib": result["memory_mib"]["peak"],
            "after_job_mib": result["memory_mib"]["after_job"],
            "seconds": result["timings_s"].get("total"),
            "phases_after_mib": phases,
        }
        runtime = worker.runtime
        worker.cache.unload()
        del worker
        memory.release_memory(runtime)
    _write_result(data)


def part_tests(args: argparse.Namespace) -> None:
    """pytest -m gpu for one worker (or, with --worker '', the host's own cases), each test's outcome."""
    from shared import workers

    names = workers.worker_names()
    junit = Path(os.environ[RESULT_ENV]).with_suffix(".xml")
    if args.worker:
        paths = ["tests/test_gpu.py", f"handlers/{args.worker}"]
        keyword = args.worker
    else:
        paths = ["tests/test_gpu.py"]
        keyword = "not (" + " or ".join(names) + ")"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider", "-k", keyword]
    command += ["--junitxml", str(junit), *paths]
    # pytest's own log beside the part's: read back if the part is killed at its timeout (tests_outcome).
    with Path(os.environ[RESULT_ENV]).with_suffix(".pytest.log").open("w") as log:
        done = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False)
    tests = parse_junit(junit) if junit.is_file() else parse_verbose(Path(log.name).read_text())
    counts = {
        status: sum(1 for test in tests if test["status"] == status) for status in ("passed", "failed", "skipped")
    }
    # 5: nothing collected (pytest's code) is a result too: this worker has no GPU tests.
    _write_result({"exit_code": done.returncode, "counts": counts, "tests": tests})
    if done.returncode not in (0, 1, 5):
        raise SystemExit(f"pytest exited {done.returncode}")


def tests_outcome(outcome: PartOutcome, log_dir: Path) -> PartOutcome:
    """A tests part killed at its timeout: the outcomes pytest printed before, and the rest not run."""
    if outcome.status != "timeout":
        return outcome
    stem = f"tests-{outcome.worker}" if outcome.worker else "tests"
    log = log_dir / f"{stem}.pytest.log"
    tests = parse_verbose(log.read_text(errors="replace")) if log.is_file() else []
    counts = {
        status: sum(1 for test in tests if test["status"] == status) for status in ("passed", "failed", "skipped")
    }
    outcome.data = {"counts": counts, "tests": tests, "cut": "the tier ran past its timeout: later tests did not run"}
    return outcome


def parse_junit(path: Path) -> list[dict[str, str]]:
    tests = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        status, reason = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status, reason = "failed", (child.get("message") or "")[:300]
            elif child.tag == "skipped":
                status, reason = "skipped", (child.get("message") or "")[:300]
        tests.append({"test": f"{case.get('classname')}::{case.get('name')}", "status": status, "reason": reason})
    return tests


def parse_verbose(output: str) -> list[dict[str, str]]:
    """The outcomes pytest -v printed, for a run that wrote no report (killed at its timeout)."""
    tests = []
    for found in re.finditer(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR)", output, re.M):
        status = {"PASSED": "passed", "SKIPPED": "skipped"}.get(found.group(2), "failed")
        tests.append({"test": found.group(1), "status": status, "reason": ""})
    return tests


PART_FUNCTIONS = {
    "host": part_host,
    "plan": part_plan,
    "build": part_build,
    "measure": part_measure,
    "batching": part_batching,
    "residency": part_residency,
    "tests": part_tests,
}


# ---------------------------------------------------------------- the run


def _part_command(part: str, plan: Plan | None = None, **extra: str) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "part", part]
    if plan is not None:
        command += ["--worker", plan.worker, "--device", plan.device, "--volume", plan.volume]
        command += ["--model-id", plan.model_id, "--size", plan.size]
        if plan.job is not None:
            command += ["--job", json.dumps(plan.job)]
    for name, value in extra.items():
        command += [f"--{name.replace('_', '-')}", value]
    return command


def choose_device(wanted: str, host: dict[str, Any]) -> str:
    """DEVICE=auto: the GPU when the host part found torch seeing one, else the CPU."""
    if wanted != "auto":
        return wanted
    return "cuda" if host.get("cuda_available") else "cpu"


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    from shared import workers

    names = workers.worker_names()
    chosen = [name for name in re.split(r"[,\s]+", args.workers) if name] or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise SystemExit(f"unknown worker(s) {', '.join(unknown)}; workers: {', '.join(names)}")
    skip = {part.strip() for part in (args.skip or "").split(",") if part.strip()}
    bad = skip - set(SKIPPABLE)
    if bad:
        raise SystemExit(f"--skip: unknown part(s) {', '.join(sorted(bad))}; parts: {', '.join(SKIPPABLE)}")
    out = Path(args.out)
    log_dir = out / "logs"
    budget = Budget(args.budget)
    started = time.time()
    volume = Path(args.volume).resolve()
    volume_root = Path(args.volume_root).resolve() if args.volume_root else None
    outcomes: list[PartOutcome] = []
    host = run_part("host", None, _part_command("host"), budget.timeout("host") or MIN_PART_SECONDS, log_dir)
    outcomes.append(host)
    device = choose_device(args.device, host.data)
    plan_command = _part_command("plan", worker=",".join(chosen), device=device, volume=str(volume))
    if volume_root is not None:
        plan_command += ["--volume-root", str(volume_root)]
    planned = run_part("plan", None, plan_command, budget.timeout("plan") or MIN_PART_SECONDS, log_dir)
    outcomes.append(planned)
    plans = {
        name: Plan(**(fields | {"residencies": tuple(fields["residencies"])}))
        for name, fields in planned.data.get("plans", {}).items()
    }
    for name in chosen:
        if name not in plans:
            error = planned.data.get("errors", {}).get(name) or f"{planned.status}: {planned.reason}"
            outcomes.append(PartOutcome("plan", name, "failed", 0.0, reason=error))
    estimates = read_estimates(chosen, {name: _default_model_id(name) for name in chosen})

    # Lane 1 (CPU): build what is missing, one after another, while lane 2 runs the tests on the GPU.
    builds: dict[str, Future[PartOutcome]] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="build") as lane:
        for name, plan in plans.items():
            if plan.build and "measure" not in skip:
                builds[name] = lane.submit(_build, plan, budget, log_dir)
        if "tests" not in skip:
            for worker in [None, *chosen]:
                timeout = budget.timeout("tests")
                if timeout is None:
                    outcomes.append(skipped("tests", worker, "over the run's budget"))
                    continue
                command = _part_command("tests", worker=worker or "")
                outcomes.append(tests_outcome(run_part("tests", worker, command, timeout, log_dir), log_dir))
        else:
            outcomes += [skipped("tests", worker, "--skip tests") for worker in [None, *chosen]]
        for name, plan in plans.items():
            outcomes += _measure_worker(plan, builds.get(name), skip, budget, log_dir)
    report = {
        "device": device,
        "label": "GPU" if device == "cuda" else "CPU",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "budget_seconds": args.budget,
        "timeouts_s": TIMEOUTS,
        "host": host.data,
        "workers": {name: asdict(plan) for name, plan in plans.items()},
        "estimates": estimates,
        "parts": [asdict(outcome) for outcome in outcomes],
    }
    report["figures"] = figures(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "report.md").write_text(markdown(report))
    return report


def _default_model_id(worker: str) -> str:
    """From the worker's catalog (light: no model library)."""
    from shared import workers

    return workers.catalog(worker).default_model_id


def _build(plan: Plan, budget: Budget, log_dir: Path) -> PartOutcome:
    timeout = budget.timeout("build")
    if timeout is None:
        return skipped("build", plan.worker, "over the run's budget")
    return run_part("build", plan.worker, _part_command("build", plan), timeout, log_dir)


def _measure_worker(
    plan: Plan, build: Future[PartOutcome] | None, skip: set[str], budget: Budget, log_dir: Path
) -> list[PartOutcome]:
    outcomes = []
    if build is not None:
        built = build.result()
        outcomes.append(built)
        if built.status != "ok":
            reason = f"its model was not built ({built.status}: {built.reason})"
            return outcomes + [skipped(part, plan.worker, reason) for part in ("measure", "batching", "residency")]
    wanted = {
        "measure": (True, "", {}),
        "batching": (plan.batches, "the adapter does not batch (batch_key is None)", {"jobs": str(BATCH_JOBS)}),
        "residency": (
            bool(plan.residencies),
            "the adapter offers no residency beyond keep and unload",
            {"residencies": ",".join(plan.residencies)},
        ),
    }
    for part, (applies, why_not, extra) in wanted.items():
        if part in skip:
            outcomes.append(skipped(part, plan.worker, f"--skip {part}"))
        elif not applies:
            outcomes.append(skipped(part, plan.worker, why_not))
        elif (timeout := budget.timeout(part)) is None:
            outcomes.append(skipped(part, plan.worker, "over the run's budget"))
        else:
            outcomes.append(run_part(part, plan.worker, _part_command(part, plan, **extra), timeout, log_dir))
    return outcomes


# ---------------------------------------------------------------- the report


def _estimate(estimates: dict[str, Any], *keys: str) -> dict[str, str] | None:
    for key in keys:
        if key in estimates:
            return estimates[key]
    return None


def figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured figure, one row each: worker, figure, value, unit, device label, the estimate beside it."""
    label = report["label"]
    rows = []
    parts = {(part["part"], part["worker"]): part for part in report["parts"]}

    def add(worker: str, figure: str, value: Any, unit: str, estimate: dict[str, str] | None = None) -> None:
        rows.append(
            {
                "worker": worker,
                "figure": figure,
                "value": value,
                "unit": unit,
                "device": label,
                "estimate": estimate["text"] if estimate else None,
                "estimate_source": estimate["source"] if estimate else None,
            }
        )

    for worker, plan in report["workers"].items():
        estimates = report["estimates"].get(worker, {})
        memory_estimate = _estimate(estimates, "checkpoint_memory", "gpu_memory")
        measure = parts.get(("measure", worker), {})
        data = measure.get("data", {}) if measure.get("status") == "ok" else {}
        kind = data.get("memory_kind", "")
        unit = "MiB (CPU: process RSS)" if label == "CPU" else "MiB (GPU: allocated)"
        if kind == "cuda_allocated" and plan["runtime"] == ONNX_RUNTIME:
            unit = "MiB (GPU: in use on the device)"
        if data:
            memory = data["memory_mib"]
            add(worker, "load time", data["load_seconds"], "s")
            add(worker, "memory after load", memory["after_load"], unit, memory_estimate)
            add(worker, "memory peak during the job", memory["peak"], unit, memory_estimate)
            add(worker, "memory after the job", memory["after_job"], unit)
            add(worker, "memory after unload", memory["after_unload"], unit)
            for name in ("first", "warm"):
                add(worker, f"{name} job", data[name]["seconds"], f"s for {data[name]['audio_seconds']} s of audio")
                add(worker, f"real-time factor, {name} job", data[name]["rtf"], "audio s per s")
            if "onnx_providers" in data:
                providers = ", ".join(data["onnx_providers"]) or "no session found"
                add(worker, "ONNX execution provider", providers, "", _estimate(estimates, "onnx_provider"))
        batching = parts.get(("batching", worker), {})
        if batching.get("status") == "ok":
            batch = batching["data"]
            add(worker, f"{batch['jobs']} jobs, one by one", batch["one_by_one"]["slowest_seconds"], "s")
            add(worker, f"{batch['jobs']} jobs, batched", batch["batched"]["slowest_seconds"], "s")
            add(worker, "throughput batched / one by one", batch["throughput_ratio"], "x",
                _estimate(estimates, "batching_ratio"))  # fmt: skip
        residency = parts.get(("residency", worker), {})
        if residency.get("status") == "ok" and data:
            add(worker, "keep: idle", data["memory_mib"]["after_load"], unit, memory_estimate)
            add(worker, "keep: peak", data["memory_mib"]["peak"], unit, memory_estimate)
            for name, values in residency["data"].items():
                add(worker, f"{name}: idle", values["idle_mib"], unit, memory_estimate)
                add(worker, f"{name}: peak", values["peak_mib"], unit, memory_estimate)
    return rows


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    host = report["host"]
    label = report["label"]
    gpus = ", ".join(gpu["name"] for gpu in host.get("gpus", [])) or "none"
    torch_note = ""
    if host.get("torch_matches_pin") is False:
        torch_note = f" (**differs from the pin, torch=={host.get('torch_pin')} in shared/constraints.txt**)"
    onnx = host.get("onnxruntime", {})
    lines = [
        f"# gpu-check report ({label})",
        "",
        f"Started {report['started']}, took {report['seconds']} s of a {report['budget_seconds']} s budget. "
        f"Device: **{report['device']}**"
        + (" (every figure is the CPU's, on the tiny models)" if label == "CPU" else ""),
        "",
        "| Host | |",
        "|---|---|",
        f"| GPU | {gpus} |",
        f"| NVIDIA driver | {host.get('driver') or 'none'} |",
        f"| CUDA (torch's build) | {host.get('torch_cuda') or 'none'} |",
        f"| torch | {host.get('torch')}{torch_note} |",
        f"| Python | {host.get('python')} |",
        f"| onnxruntime | {onnx.get('version')} ({', '.join(onnx.get('providers', [])) or '-'}) |",
        "",
        "## Figures",
        "",
        "Estimates are the README's, read when this report was made (the source column says where).",
        "",
        "| Worker | Figure | Measured | Unit | Device | README estimate | Estimate from |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["figures"]:
        lines.append(
            f"| `{row['worker']}` | {row['figure']} | {_format(row['value'])} | {row['unit']} | {row['device']} | "
            f"{row['estimate'] or '-'} | {row['estimate_source'] or '-'} |"
        )
    lines += ["", "## Models and jobs", "", "| Worker | Model measured | Size | Standard job | Job from |"]
    lines.append("|---|---|---|---|---|")
    for worker, plan in report["workers"].items():
        job = json.dumps(plan["job"]) if plan["job"] is not None else "example_input()"
        lines.append(f"| `{worker}` | {plan['model_id']} ({plan['architecture']}) | {plan['size']} | `{job}` | "
                     f"{plan['job_source']} |")  # fmt: skip
    lines += ["", "## Parts", "", "| Part | Worker | Status | Seconds | Note |", "|---|---|---|---|---|"]
    for part in report["parts"]:
        note = part["reason"]
        if part["part"] == "tests" and part["data"].get("counts"):
            note = ", ".join(f"{count} {status}" for status, count in part["data"]["counts"].items()) + (
                f"; {note}" if note else ""
            )
        lines.append(
            f"| {part['part']} | {part['worker'] or '(host)'} | {part['status']} | {part['seconds']} | "
            f"{note.replace('|', '/')} |"
        )
    tests = [(part["worker"], test) for part in report["parts"] if part["part"] == "tests"
             for test in part["data"].get("tests", [])]  # fmt: skip
    if tests:
        lines += ["", "## GPU tests", "", "| Worker | Test | Outcome | Reason |", "|---|---|---|---|"]
        for worker, test in tests:
            reason = test["reason"].replace("|", "/").replace("\n", " ")
            lines.append(f"| {worker or '(host)'} | `{test['test']}` | {test['status']} | {reason} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["part"]:
        parser = argparse.ArgumentParser(prog="gpu_check.py part")
        parser.add_argument("part", choices=sorted(PART_FUNCTIONS))
        for option in ("worker", "device", "volume", "volume-root", "model-id", "size", "job", "residencies"):
            parser.add_argument(f"--{option}", default=None)
        parser.add_argument("--jobs", type=int, default=BATCH_JOBS)
        args = parser.parse_args(argv[1:])
        PART_FUNCTIONS[args.part](args)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="", help="comma-separated; default: every worker in handlers/")
    parser.add_argument("--out", default="outputs/gpu-check", help="folder for report.md, report.json and logs/")
    parser.add_argument("--volume-root", default="", help="a volume holding real weights (the default checkpoints)")
    parser.add_argument("--volume", default=str(DEFAULT_VOLUME), help="where random-weight models are built")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {', '.join(SKIPPABLE)}")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds for every part together")
    args = parser.parse_args(argv)
    report = run_check(args)
    failed = [part for part in report["parts"] if part["status"] in ("failed", "timeout")]
    print(f"report: {Path(args.out) / 'report.md'} ({len(report['figures'])} figures, {report['label']})")
    for part in failed:
        print(f"  {part['part']} {part['worker'] or ''}: {part['status']}: {part['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
