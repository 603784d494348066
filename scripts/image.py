"""Build a worker's image, and check the built image on the tiny volume.

    python scripts/image.py build <worker> [--tag T]                    # make image WORKER=<worker>
    python scripts/image.py check <worker> [--tag T] --volume .volume   # make image-check WORKER=<worker>

build: `docker buildx bake <worker> --load` (the worker's target in docker-bake.hcl, whose variables BASE_IMAGE,
WITH_TRITON and LOCAL_WHEELS are read from the environment) when a Docker daemon answers and has buildx; else
`docker build` when a daemon answers, `buildah build` otherwise. IMAGE_BUILD_FLAGS (split like a shell line) are
flags of those two, e.g. `--build-arg BASE_IMAGE=...` or a proxy's CA mount: when set, they are used instead of bake.
check: with `docker` (or `podman` when no daemon answers) runs the image as RunPod would, on CPU with the
worker's first tiny model mounted read-only at /runpod-volume: one job from the worker's test_input.json
(the image's own one-shot mode), then the local API server, timed from `run` to its first answer
(--starts times), and its test_input.json posted to /runsync. Prints the image's uncompressed size and its
compressed size (each layer gzipped, as `docker push` uploads it), and exits 1 if a job failed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared import workers  # noqa: E402

READY_TIMEOUT_SECONDS = 300.0
JOB_TIMEOUT_SECONDS = 600.0
CHUNK = 64 * 2**20


def docker_daemon() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def default_tag(worker: str) -> str:
    return f"{worker.replace('_', '-')}-worker:dev"


def buildx_available() -> bool:
    try:
        return subprocess.run(["docker", "buildx", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def build_command(worker: str, tag: str) -> list[str]:
    extra = shlex.split(os.environ.get("IMAGE_BUILD_FLAGS", ""))
    daemon = docker_daemon()
    if daemon and not extra and buildx_available():
        return ["docker", "buildx", "bake", "-f", "docker-bake.hcl", "--load", "--set", f"{worker}.tags={tag}", worker]
    builder = ["docker", "build"] if daemon else ["buildah", "build", "--layers"]
    return [*builder, *extra, "-f", f"dockerfiles/{worker}.Dockerfile", "-t", tag, "."]


def build(worker: str, tag: str) -> int:
    command = build_command(worker, tag)
    print("+", shlex.join(command), flush=True)
    return subprocess.run(command, cwd=REPO).returncode


def gzipped_layer_bytes(runner: str, tag: str) -> int:
    """What a registry stores: each layer of the saved image, gzipped at the default level (in 64 MB
    pieces on every core: the sizes add up to a whole-stream gzip's within a fraction of a percent)."""
    with tempfile.TemporaryDirectory(prefix="image-check-") as folder:
        archive = Path(folder) / "image.tar"
        subprocess.run([runner, "save", "-o", str(archive), tag], check=True, capture_output=True)
        with tarfile.open(archive) as image:
            layers = json.load(image.extractfile("manifest.json"))[0]["Layers"]
            pieces = [(image.getmember(layer).offset_data, image.getmember(layer).size) for layer in layers]
        chunks = [(start + at, min(CHUNK, size - at)) for start, size in pieces for at in range(0, size, CHUNK)]
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            return sum(pool.map(lambda chunk: _gzipped_size(archive, *chunk), chunks))


def _gzipped_size(archive: Path, offset: int, length: int) -> int:
    with archive.open("rb") as source:
        source.seek(offset)
        return len(gzip.compress(source.read(length), mtime=0))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=JOB_TIMEOUT_SECONDS) as response:
        return json.load(response)


def summary(result: dict) -> str:
    """The fields that say whether a job worked, not its (long) audio details."""
    if "error" in result:
        return f"error: {result['error']}"
    outputs = result.get("outputs", [])
    first = {key: outputs[0].get(key) for key in ("duration_seconds", "sample_rate", "format")} if outputs else {}
    return f"{len(outputs)} output(s), first {json.dumps(first)}"


def check(worker: str, tag: str, volume: Path, starts: int) -> int:
    runner = "docker" if docker_daemon() else "podman"
    size = int(
        subprocess.run(
            [runner, "image", "inspect", "--format", "{{.Size}}", tag], check=True, capture_output=True, text=True
        ).stdout
    )
    print(f"{tag}: {size / 1e9:.3f} GB uncompressed", flush=True)
    print(f"{tag}: {gzipped_layer_bytes(runner, tag) / 1e9:.3f} GB compressed (gzipped layers)", flush=True)

    model_id = workers.module(worker, "fixtures").TINY_MODELS[0].model_id
    mount = ["-v", f"{volume.resolve()}:/runpod-volume:ro", "-e", f"MODEL_ID={model_id}", "-e", "DEVICE=cpu"]
    failed = False

    one_shot = subprocess.run(
        [runner, "run", "--rm", "--network", "none", *mount, tag],
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_SECONDS,
    )
    try:
        result = json.loads(one_shot.stdout[one_shot.stdout.index("{") :])
    except ValueError:
        result = {"error": f"no JSON result (exit {one_shot.returncode}): {one_shot.stderr[-2000:]}"}
    failed |= one_shot.returncode != 0 or "error" in result
    print(f"one-shot job (test_input.json): exit {one_shot.returncode}, {summary(result)}", flush=True)

    job_input = json.loads((workers.HANDLERS / worker / "test_input.json").read_text())
    ready_seconds = []
    for attempt in range(starts):
        port = free_port()
        name = f"image-check-{worker}-{os.getpid()}-{attempt}"
        serve = [
            "python",
            "-m",
            f"handlers.{worker}",
            "--rp_serve_api",
            "--rp_api_host",
            "127.0.0.1",
            "--rp_api_port",
            str(port),
        ]
        started = time.monotonic()
        subprocess.run(
            [runner, "run", "-d", "--name", name, "--network", "host", *mount, tag, *serve],
            check=True,
            capture_output=True,
        )
        try:
            while not answers(f"http://127.0.0.1:{port}/docs"):
                if time.monotonic() - started > READY_TIMEOUT_SECONDS:
                    logs = subprocess.run([runner, "logs", name], capture_output=True, text=True)
                    print(f"not ready after {READY_TIMEOUT_SECONDS:.0f} s:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
                    return 1
                time.sleep(0.05)
            ready_seconds.append(time.monotonic() - started)
            if attempt == starts - 1:
                answer = post_json(f"http://127.0.0.1:{port}/runsync", job_input)
                output = answer.get("output") or {"error": answer.get("error", "no output")}
                failed |= answer.get("status") != "COMPLETED" or "error" in output
                print(f"/runsync (test_input.json): {answer.get('status')}, {summary(output)}", flush=True)
        finally:
            subprocess.run([runner, "rm", "-f", name], capture_output=True)
    runs = ", ".join(f"{seconds:.2f}" for seconds in ready_seconds)
    print(f"start to ready: median {statistics.median(ready_seconds):.2f} s over {starts} starts ({runs})")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("build", "check"))
    parser.add_argument("worker", choices=workers.worker_names())
    parser.add_argument("--tag", help="default: <worker>-worker:dev")
    parser.add_argument("--volume", type=Path, default=REPO / ".volume", help="the tiny volume (make tiny-models)")
    parser.add_argument("--starts", type=int, default=3, help="local API starts to time")
    args = parser.parse_args()
    tag = args.tag or default_tag(args.worker)
    if args.action == "build":
        return build(args.worker, tag)
    return check(args.worker, tag, args.volume, args.starts)


if __name__ == "__main__":
    sys.exit(main())
