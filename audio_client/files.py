"""Audio in and out: local input files sent inline or through the bucket, outputs downloaded.

Input: a file of at most INLINE_INPUT_MAX_BYTES goes inline as base64 (RunPod's /run body is capped at
10 MB, /runsync at 20 MB); a larger one is uploaded to the bucket first and sent as s3://bucket/key
(BUCKET_NAME, BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY, BUCKET_REGION: the
workers' own variables). The worker must be allowed to read that bucket (its S3_ALLOWED_BUCKETS).

Output: each of a result's outputs is saved as <out>/<job id>-<index>.<format>, from the first of: inline
base64, the presigned `url`, the `s3_uri` (with the BUCKET_* credentials), or the `path` a worker without a
bucket wrote under its OUTPUT_DIR (when that folder is given: a local worker's). The answer comes from a
server, so none of it is trusted (DownloadRules): the job id is made one file-name part as the workers make
it, the format must be one the workers write, and every file lands under <out>. Each download is capped in
size and time; a URL must be http(s) on a public address, or on the worker's own network (loopback for a
worker on this machine, a private network for one on the LAN), and so must every redirect; an s3_uri must
be in BUCKET_NAME (or a bucket allowed by name); a `path` must stay inside the worker's OUTPUT_DIR.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from audio_client.targets import NetworkError, TargetError, with_retries

INLINE_INPUT_MAX_BYTES = 6 * 1024 * 1024  # 8 MB as base64: under /run's 10 MB with room for the rest
MAX_UPLOAD_BYTES = 256 * 1024 * 1024  # one request to the page's server (ui.py), its files included
# The workers' output formats (shared/formats.py, which the client cannot import: it installs without the
# worker library) with the content type each is served as.
OUTPUT_CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
}
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024  # a 10-minute stereo 48 kHz WAV is 115 MB
DOWNLOAD_TIMEOUT_S = 600.0  # for one file, retries included
MAX_REDIRECTS = 5
CHUNK_BYTES = 1024 * 1024


class OutputError(ValueError):
    """An output that cannot be saved; the message names the output and why."""


def safe_file_name(name: str, fallback: str) -> str:
    """`name` as one file-name part, as the workers make a job id one (shared/storage.py's safe_job_id):
    only letters, digits, '.', '_' and '-', never a leading dot (so never '..' nor a hidden file)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or fallback


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


def attach_file(
    path: Path, bucket: Bucket | None, inline_max_bytes: int = INLINE_INPUT_MAX_BYTES, label: str | None = None
) -> str:
    """The value a request's audio field takes for a local file: base64, or an s3:// URI after an upload.
    Messages name the file as `label` (default: its path)."""
    label = label or str(path)
    size = path.stat().st_size
    if size <= inline_max_bytes:
        return base64.b64encode(path.read_bytes()).decode()
    if bucket is None:
        raise ValueError(
            f"{label}: {size} bytes, over the {inline_max_bytes}-byte inline limit; set BUCKET_NAME (and "
            "BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY) to send it through the bucket"
        )
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    key = f"inputs/{uuid.uuid4().hex}-{path.name}"
    try:
        bucket.client().upload_file(str(path), bucket.name, key)  # botocore retries network failures itself
    except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
        # boto's message repeats the local path, which for the page's uploads is a temporary file.
        reason = str(exc).replace(str(path), label)
        raise ValueError(f"{label}: upload to s3://{bucket.name}/{key} failed: {reason}") from None
    return f"s3://{bucket.name}/{key}"


@dataclass(frozen=True)
class DownloadRules:
    """What the client accepts when it fetches a result's audio (the defaults are the command's)."""

    max_bytes: int = MAX_DOWNLOAD_BYTES  # per file
    timeout_s: float = DOWNLOAD_TIMEOUT_S  # per file, retries included
    extra_buckets: frozenset[str] = frozenset()  # s3_uri buckets accepted besides BUCKET_NAME


DEFAULT_DOWNLOAD_RULES = DownloadRules()


@dataclass(frozen=True)
class Saved:
    path: Path
    source: str  # base64, url, s3 or path
    format: str
    duration_seconds: float | None


def output_path(out_dir: Path, job_id: str, index: int, audio_format: object) -> Path:
    """<out>/<job id>-<index>.<format>, refused unless the format is a worker's and the file is in out_dir."""
    if audio_format not in OUTPUT_CONTENT_TYPES:
        raise OutputError(
            f"output {index}: format {audio_format!r} is not one the workers write ({', '.join(OUTPUT_CONTENT_TYPES)})"
        )
    path = out_dir / f"{safe_file_name(job_id, 'job')}-{index}.{audio_format}"
    # The name is one plain part by now; a symbolic link already there could still point elsewhere.
    if path.resolve().parent != out_dir.resolve():
        raise OutputError(f"output {index}: {path} leads outside {out_dir}")
    return path


def save_outputs(
    result: Mapping[str, Any],
    job_id: str,
    out_dir: Path,
    bucket: Bucket | None = None,
    worker_output_dir: Path | None = None,
    rules: DownloadRules = DEFAULT_DOWNLOAD_RULES,
    worker_url: str | None = None,
) -> list[Saved]:
    """Save every output of `result`; `worker_url`, the address the job was sent to, names the network
    (loopback, private) that its URLs may use besides public addresses."""
    outputs = result.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(output, Mapping) for output in outputs):
        raise OutputError("outputs: expected a list of objects")
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [output_path(out_dir, job_id, index, output.get("format")) for index, output in enumerate(outputs)]
    networks = allowed_networks(worker_url)
    saved = []
    for index, (output, target) in enumerate(zip(outputs, targets, strict=True)):
        fetch = _Fetch(f"output {index}", target, rules, time.monotonic() + rules.timeout_s)
        source = fetch.save(output, bucket, worker_output_dir, networks)
        saved.append(Saved(target, source, output["format"], output.get("duration_seconds")))
    return saved


def _network(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_global:
        return "public"
    if address.is_loopback:
        return "loopback"
    if address.is_private and not address.is_link_local:
        return "private"
    return "special"  # link-local (a cloud's metadata service), multicast, reserved: never downloaded from


def _addresses(host: str, port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:  # retried as a network failure: a name server can be briefly unreachable
        raise requests.ConnectionError(f"{host}: cannot be resolved ({exc})") from None
    return {ipaddress.ip_address(entry[4][0].partition("%")[0]) for entry in found}


def allowed_networks(worker_url: str | None) -> frozenset[str]:
    """Public addresses, and the worker's own network when it is loopback or private (a worker on this
    machine or on the LAN keeps its files, or its S3 store, beside it)."""
    networks = {"public"}
    host = urlsplit(worker_url).hostname if worker_url else None
    if host:
        try:
            found = _addresses(host, 80)
        except requests.ConnectionError:
            found = set()
        networks |= {_network(address) for address in found} & {"loopback", "private"}
    return frozenset(networks)


class _Fetch:
    """One output saved to `target`: what it is called in messages, the limits, the deadline."""

    def __init__(self, what: str, target: Path, rules: DownloadRules, deadline: float) -> None:
        self.what, self.target, self.rules, self.deadline = what, target, rules, deadline

    def save(
        self, output: Mapping[str, Any], bucket: Bucket | None, worker_output_dir: Path | None, networks: frozenset[str]
    ) -> str:
        if "base64" in output:
            encoded = str(output["base64"])
            self._check_size(len(encoded) * 3 // 4)
            self._write([base64.b64decode(encoded)])
            return "base64"
        if "url" in output:
            try:
                with_retries(lambda: self._download(str(output["url"]), networks), f"{self.what}: download")
            except (NetworkError, TargetError) as exc:
                raise OutputError(str(exc)) from None
            return "url"
        if "s3_uri" in output:
            self._from_bucket(str(output["s3_uri"]), bucket)
            return "s3"
        if "path" in output and worker_output_dir is not None:
            self._copy(str(output["path"]), worker_output_dir)
            return "path"
        raise OutputError(
            f"{self.what}: the worker kept it at {output.get('path')} under its OUTPUT_DIR; "
            "pass --worker-output-dir to copy it, or configure a bucket on the worker"
        )

    def _check_size(self, size: int) -> None:
        if size > self.rules.max_bytes:
            raise OutputError(
                f"{self.what}: over the {self.rules.max_bytes}-byte download limit (--max-download-bytes)"
            )

    def _remaining_s(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise OutputError(f"{self.what}: not saved within {self.rules.timeout_s:g} s (--download-timeout)")
        return remaining

    def _write(self, chunks: Iterable[bytes]) -> None:
        """Into a new temporary file beside the target (never through a link already there), renamed into
        place once whole: a refused download leaves no file."""
        handle, name = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}-", suffix=".part")
        unfinished = Path(name)
        written = 0
        try:
            with os.fdopen(handle, "wb") as sink:
                for chunk in chunks:
                    written += len(chunk)
                    self._check_size(written)
                    self._remaining_s()
                    sink.write(chunk)
            unfinished.replace(self.target)
        finally:
            unfinished.unlink(missing_ok=True)

    def _check_url(self, url: str, networks: frozenset[str]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OutputError(f"{self.what}: {parts.scheme or 'no'} scheme; only http(s) URLs are downloaded")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        for address in _addresses(parts.hostname, port):
            if _network(address) not in networks:
                raise OutputError(
                    f"{self.what}: {parts.hostname} is a {_network(address)} address ({address}); downloads go "
                    "only to public addresses, or to the worker's own loopback or private network"
                )

    def _download(self, url: str, networks: frozenset[str]) -> None:
        # Redirects are followed here, not by requests, so that every hop is checked.
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url, networks)
            response = requests.get(
                url,
                stream=True,
                allow_redirects=False,
                timeout=(10, min(60, self._remaining_s())),
                headers={"Accept-Encoding": "identity"},  # the cap counts decoded bytes either way
            )
            with response:
                if response.is_redirect:
                    url = urljoin(url, response.headers["location"])
                    continue
                response.raise_for_status()
                declared = response.headers.get("content-length", "")
                if declared.isdigit():
                    self._check_size(int(declared))
                # read1: what has arrived so far, so that a slow sender meets the deadline (urllib3 >= 2,
                # as the runpod SDK requires), decoded as it comes. urllib3's own errors, which requests
                # wraps only in iter_content, become requests' so that they are retried.
                try:
                    self._write(iter(partial(response.raw.read1, CHUNK_BYTES, decode_content=True), b""))
                except urllib3.exceptions.TimeoutError as exc:
                    raise requests.Timeout(str(exc)) from None
                except urllib3.exceptions.HTTPError as exc:
                    raise requests.ConnectionError(str(exc)) from None
                return
        raise OutputError(f"{self.what}: more than {MAX_REDIRECTS} redirects")

    def _from_bucket(self, uri: str, bucket: Bucket | None) -> None:
        if bucket is None:
            raise OutputError(f"{self.what}: {uri}: set the BUCKET_* variables to download it")
        name, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not key:
            raise OutputError(f"{self.what}: {uri!r} is not an s3://bucket/key URI")
        if name != bucket.name and name not in self.rules.extra_buckets:
            raise OutputError(
                f"{self.what}: {uri} is in bucket {name!r}, not BUCKET_NAME ({bucket.name}); "
                f"pass --allow-bucket {name} to download from it"
            )
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = bucket.client().get_object(Bucket=name, Key=key)
            self._check_size(int(found.get("ContentLength") or 0))
            with closing(found["Body"]) as body:  # its own __enter__ hands out the raw stream
                self._write(body.iter_chunks(CHUNK_BYTES))
        except (BotoCoreError, ClientError) as exc:
            raise OutputError(f"{self.what}: {uri}: {exc}") from None

    def _copy(self, relative: str, worker_output_dir: Path) -> None:
        root = worker_output_dir.resolve()
        source = (root / relative).resolve()
        if not source.is_relative_to(root):
            raise OutputError(f"{self.what}: path {relative!r} leaves the worker's output folder {worker_output_dir}")
        self._check_size(source.stat().st_size)
        with source.open("rb") as stream:
            self._write(iter(partial(stream.read, CHUNK_BYTES), b""))


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
