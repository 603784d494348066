"""Audio in and out: local input files sent inline or through the bucket, outputs downloaded.

Input: a file of at most INLINE_INPUT_MAX_BYTES goes inline as base64 (RunPod's /run body is capped at
10 MB, /runsync at 20 MB); a larger one is uploaded to the bucket first and sent as s3://bucket/key
(BUCKET_NAME, BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY, BUCKET_REGION: the
workers' own variables). The worker must be allowed to read that bucket (its S3_ALLOWED_BUCKETS).

Output: each of a result's outputs is saved as <out>/<job id>-<index>.<format>, from the first of: inline
base64, the presigned `url`, the `s3_uri` (with the BUCKET_* credentials), or the `path` a worker without a
bucket wrote under its OUTPUT_DIR (when that folder is given: a local worker's).
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from audio_client.targets import with_retries

INLINE_INPUT_MAX_BYTES = 6 * 1024 * 1024  # 8 MB as base64: under /run's 10 MB with room for the rest


@dataclass(frozen=True)
class Bucket:
    name: str
    endpoint_url: str | None
    access_key_id: str | None
    secret_access_key: str | None
    region: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Bucket | None:
        if not environ.get("BUCKET_NAME"):
            return None
        return cls(
            environ["BUCKET_NAME"],
            environ.get("BUCKET_ENDPOINT_URL") or None,
            environ.get("BUCKET_ACCESS_KEY_ID") or None,
            environ.get("BUCKET_SECRET_ACCESS_KEY") or None,
            environ.get("BUCKET_REGION") or "us-east-1",
        )

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            # Path-style keys for a non-AWS store (R2, B2, MinIO, SeaweedFS), as the workers address it.
            config=Config(s3={"addressing_style": "path" if self.endpoint_url else "auto"}),
        )


def attach_file(path: Path, bucket: Bucket | None, inline_max_bytes: int = INLINE_INPUT_MAX_BYTES) -> str:
    """The value a request's audio field takes for a local file: base64, or an s3:// URI after an upload."""
    size = path.stat().st_size
    if size <= inline_max_bytes:
        return base64.b64encode(path.read_bytes()).decode()
    if bucket is None:
        raise ValueError(
            f"{path}: {size} bytes, over the {inline_max_bytes}-byte inline limit; set BUCKET_NAME (and "
            "BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY) to send it through the bucket"
        )
    key = f"inputs/{uuid.uuid4().hex}-{path.name}"
    bucket.client().upload_file(str(path), bucket.name, key)  # botocore retries network failures itself
    return f"s3://{bucket.name}/{key}"


@dataclass(frozen=True)
class Saved:
    path: Path
    source: str  # base64, url, s3 or path
    format: str
    duration_seconds: float | None


def save_outputs(
    result: Mapping[str, Any],
    job_id: str,
    out_dir: Path,
    bucket: Bucket | None = None,
    worker_output_dir: Path | None = None,
) -> list[Saved]:
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for index, output in enumerate(result.get("outputs", [])):
        target = out_dir / f"{job_id}-{index}.{output['format']}"
        source = _save_one(output, target, bucket, worker_output_dir)
        saved.append(Saved(target, source, output["format"], output.get("duration_seconds")))
    return saved


def _save_one(output: Mapping[str, Any], target: Path, bucket: Bucket | None, worker_output_dir: Path | None) -> str:
    if "base64" in output:
        target.write_bytes(base64.b64decode(output["base64"]))
        return "base64"
    if "url" in output:

        def download() -> None:
            response = requests.get(output["url"], timeout=120)
            response.raise_for_status()
            target.write_bytes(response.content)

        with_retries(download, f"download of output {output.get('index')}")
        return "url"
    if "s3_uri" in output:
        if bucket is None:
            raise ValueError(f"{output['s3_uri']}: set the BUCKET_* variables to download it")
        name, _, key = output["s3_uri"][5:].partition("/")
        bucket.client().download_file(name, key, str(target))
        return "s3"
    if "path" in output and worker_output_dir is not None:
        shutil.copyfile(worker_output_dir / output["path"], target)
        return "path"
    raise ValueError(
        f"output {output.get('index')}: the worker kept it at {output.get('path')} under its OUTPUT_DIR; "
        "pass --worker-output-dir to copy it, or configure a bucket on the worker"
    )


class StreamFile:
    """Streamed audio chunks appended to one file as they arrive: 16-bit PCM into a WAV (its header is
    completed at close), MP3 pieces one after another (each is self-contained)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds = 0.0
        self._wav: Any = None
        self._mp3: Any = None

    def write(self, chunk: Mapping[str, Any]) -> None:
        data = base64.b64decode(chunk["audio_base64"])
        if chunk["format"] == "pcm_s16le":
            if self._wav is None:
                import wave

                self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 (closed by close())
                self._wav.setnchannels(chunk["channels"])
                self._wav.setsampwidth(2)
                self._wav.setframerate(chunk["sample_rate"])
            self._wav.writeframes(data)
        else:
            if self._mp3 is None:
                self._mp3 = self.path.open("wb")
            self._mp3.write(data)
        self.seconds += chunk["frames"] / chunk["sample_rate"]

    def close(self) -> None:
        for handle in (self._wav, self._mp3):
            if handle is not None:
                handle.close()
