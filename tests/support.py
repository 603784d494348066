"""What tests share: the SeaweedFS server and worker-process handles, and how to read a worker's result."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import requests
import soundfile
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
ACCESS_KEY = "AKIATESTWORKER0001"
SECRET_KEY = "tEsT-s3cret-Z9f8e7d6c5b4a3"
BUCKET = "audio-results"


def wait_for(check, what: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None):
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


def stop(process: subprocess.Popen, grace: float = 60) -> None:
    """Ask a server to stop, and make it stop: on a loaded machine SeaweedFS took ~28 s to exit."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        """The error of a refused job: FAILED for a plain handler; a generator handler's one-item list locally."""
        answer = self.runsync(job_input)
        if answer["status"] == "COMPLETED" and isinstance(answer["output"], list) and len(answer["output"]) == 1:
            assert set(answer["output"][0]) == {"error"}, answer
            return answer["output"][0]["error"]
        assert answer["status"] == "FAILED", answer
        assert isinstance(answer["error"], str)
        return answer["error"]

    def result(self, job_input: dict) -> dict:
        """A completed job's result, whatever the handler kind (see `job_result`)."""
        result = job_result(self.output(job_input))
        assert "error" not in result, result
        return result

    def output_file(self, path: str) -> Path:
        """A local output, from the path the result gives (relative to the worker's OUTPUT_DIR)."""
        return self.log.parent / "outputs" / path

    def stop(self) -> None:
        stop(self.process)

    def wait_until_serving(self, timeout: float = 120) -> None:
        wait_for(lambda: requests.get(f"{self.url}/docs", timeout=2).ok, self.url, timeout, self.process, self.log)

    def logs(self) -> str:
        return self.log.read_text()


def stream_job(worker: WorkerProcess, job_input: dict, timeout: float = 120) -> list[dict]:
    """A job through /run, then /stream: every item a generator handler yielded, in order."""
    job = requests.post(f"{worker.url}/run", json={"input": job_input}, timeout=30).json()
    answer = requests.post(f"{worker.url}/stream/{job['id']}", timeout=timeout).json()
    assert answer["status"] == "COMPLETED", answer
    return [item["output"] for item in answer["stream"]]


def job_result(output) -> dict:
    """A job's result: a generator handler's aggregated output is a list whose last item is the result."""
    return output[-1] if isinstance(output, list) else output


def download(url: str):
    """An output's presigned URL, fetched and decoded: (response, samples (frames, channels), rate)."""
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    samples, rate = soundfile.read(io.BytesIO(response.content), always_2d=True)
    return response, samples, rate


@dataclass(frozen=True)
class InstalledClient:
    """The client as a user gets it: its wheel, built from audio_client/, installed alone into a fresh venv."""

    venv: Path
    home: Path  # a folder outside the repository, to run it from: nothing of the workers is importable there

    @property
    def command(self) -> str:
        return str(self.venv / "bin" / "audio-client")

    def env(self, **extra: str) -> dict[str, str]:
        """The caller's environment without PYTHONPATH or any client routing, plus `extra`."""
        kept = {
            key: value
            for key, value in os.environ.items()
            if key != "PYTHONPATH" and not key.startswith(("AUDIO_CLIENT_", "BUCKET_"))
        }
        return kept | extra
