"""What the client refuses in a server's answer (issue 26): files outside --out, unknown formats, downloads
without bounds or to private addresses, buckets and local files it was not given; and the errors it shows."""

from __future__ import annotations

import base64
import gzip
import io
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from botocore.response import StreamingBody

from audio_client.cli import download_rules, parser
from audio_client.files import (
    DEFAULT_DOWNLOAD_RULES,
    OUTPUT_CONTENT_TYPES,
    Bucket,
    DownloadRules,
    OutputError,
    Saved,
    safe_file_name,
    save_outputs,
)
from audio_client.targets import TargetError, with_retries
from shared.formats import AUDIO_FORMATS
from shared.storage import safe_job_id

pytestmark = pytest.mark.unit
WAV = base64.b64encode(b"RIFF....WAVE").decode()
LOCAL_WORKER = "http://127.0.0.1:8000"  # a worker on this machine: its files may come over loopback


def test_the_clients_formats_and_file_names_are_the_workers():
    assert {name: info.content_type for name, info in AUDIO_FORMATS.items()} == OUTPUT_CONTENT_TYPES
    assert all(info.extension == name for name, info in AUDIO_FORMATS.items())
    for job_id in ("sync-4f6c", "../escaped", "/abs/path", "..", "a b\\c", ".hidden", "é"):
        assert safe_file_name(job_id, "job") == safe_job_id(job_id)


@pytest.mark.parametrize("job_id", ["../escaped", "/tmp/absolute", "..", "a/../../b"])
def test_a_job_id_cannot_lead_the_files_out_of_the_folder(tmp_path, job_id):
    out = tmp_path / "out"
    (saved,) = save_outputs({"outputs": [{"format": "wav", "base64": WAV}]}, job_id, out)
    assert saved.path.parent == out and saved.path.read_bytes() == base64.b64decode(WAV)
    assert sorted(path.name for path in tmp_path.rglob("*")) == sorted(["out", saved.path.name])


@pytest.mark.parametrize("audio_format", ["pth", "wav/../../x", "", None])
def test_only_the_workers_formats_are_saved(tmp_path, audio_format):
    with pytest.raises(OutputError, match=r"output 0: format .* is not one the workers write \(wav, flac"):
        save_outputs({"outputs": [{"format": audio_format, "base64": WAV}]}, "job", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_link_in_the_folder_cannot_redirect_a_file(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere.wav"
    out.mkdir()
    (out / "job-0.wav").symlink_to(elsewhere)
    with pytest.raises(OutputError, match="leads outside"):
        save_outputs({"outputs": [{"format": "wav", "base64": WAV}]}, "job", out)
    assert not elsewhere.exists()


Reply = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def http_server() -> Iterator[Callable[[dict[str, Reply]], str]]:
    """A server on 127.0.0.1 answering each path with its reply; returns its base URL."""
    servers = []

    def start(replies: dict[str, Reply]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                replies[self.path](self)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _body(data: bytes, **headers: str) -> Reply:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        for name, value in {"Content-Length": str(len(data)), **headers}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    return reply


def _redirect(location: str) -> Reply:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return reply


def _trickle(handler: BaseHTTPRequestHandler) -> None:
    """A byte every 0.1 s for 5 s: never a read timeout, yet never done in time."""
    handler.send_response(200)
    handler.end_headers()
    for _ in range(50):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.1)


def _save_url(
    url: str, out: Path, rules: DownloadRules = DEFAULT_DOWNLOAD_RULES, worker_url: str | None = LOCAL_WORKER
) -> list[Saved]:
    return save_outputs({"outputs": [{"format": "wav", "url": url}]}, "job", out, rules=rules, worker_url=worker_url)


def test_a_download_is_capped_in_size_even_when_compressed_and_leaves_no_partial_file(tmp_path, http_server):
    bomb = gzip.compress(bytes(8 * 1024 * 1024))  # 8 MiB of zeros in a few KB
    base = http_server(
        {"/bomb": _body(bomb, **{"Content-Encoding": "gzip"}), "/big": _body(b"x" * 2048), "/ok": _body(b"RIFF")}
    )
    small = DownloadRules(max_bytes=1024 * 1024)
    with pytest.raises(OutputError, match=r"output 0: over the 1048576-byte download limit \(--max-download-bytes\)"):
        _save_url(f"{base}/bomb", tmp_path, small)
    with pytest.raises(OutputError, match="over the 1024-byte download limit"):
        _save_url(f"{base}/big", tmp_path, DownloadRules(max_bytes=1024))
    assert list(tmp_path.iterdir()) == []
    (saved,) = _save_url(f"{base}/ok", tmp_path, small)
    assert saved.source == "url" and saved.path.read_bytes() == b"RIFF"


def _stall(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.end_headers()
    time.sleep(5)


def test_a_download_has_a_deadline(tmp_path, http_server):
    base = http_server({"/slow": _trickle, "/stalled": _stall})
    for path in ("/slow", "/stalled"):
        started = time.monotonic()
        with pytest.raises(OutputError, match=r"output 0: not saved within 1 s \(--download-timeout\)"):
            _save_url(f"{base}{path}", tmp_path, DownloadRules(timeout_s=1))
        assert time.monotonic() - started < 4, path
    assert list(tmp_path.iterdir()) == []


def test_urls_and_redirects_go_only_to_public_addresses_or_the_workers_own_network(tmp_path, http_server):
    base = http_server(
        {
            "/metadata": _redirect("http://169.254.169.254/latest/meta-data/"),
            "/lan": _redirect("http://10.0.0.1/secret"),
            "/file": _redirect("file:///etc/passwd"),
            "/loop": _redirect("/loop"),
            "/hop": _redirect("/ok"),
            "/ok": _body(b"RIFF"),
        }
    )
    with pytest.raises(OutputError, match=r"169\.254\.169\.254 is a special address"):
        _save_url(f"{base}/metadata", tmp_path)
    with pytest.raises(OutputError, match=r"10\.0\.0\.1 is a private address"):
        _save_url(f"{base}/lan", tmp_path)  # the worker is on loopback, not on that network
    with pytest.raises(OutputError, match="file scheme; only http"):
        _save_url(f"{base}/file", tmp_path)
    with pytest.raises(OutputError, match="more than 5 redirects"):
        _save_url(f"{base}/loop", tmp_path)
    # A worker on RunPod (a public address) cannot send the client to this machine.
    with pytest.raises(OutputError, match=r"127\.0\.0\.1 is a loopback address"):
        _save_url(f"{base}/ok", tmp_path, worker_url="https://api.runpod.ai/v2/abc123")
    with pytest.raises(OutputError, match="loopback address"):
        _save_url(f"{base}/ok", tmp_path, worker_url=None)
    assert _save_url(f"{base}/hop", tmp_path)[0].path.read_bytes() == b"RIFF"


class _StoredBucket(Bucket):
    """BUCKET_NAME=mine, holding one object, with no S3 store behind it."""

    def client(self):
        data = b"RIFF" * 100

        class Store:
            @staticmethod
            def get_object(Bucket: str, Key: str) -> dict:  # noqa: N803 (boto3's names)
                return {"ContentLength": len(data), "Body": StreamingBody(io.BytesIO(data), len(data))}

        return Store()


def test_s3_outputs_come_only_from_the_configured_bucket_or_one_allowed_by_name(tmp_path):
    bucket = _StoredBucket("mine", None, None, None, "us-east-1")
    elsewhere = {"outputs": [{"format": "wav", "s3_uri": "s3://theirs/key.wav"}]}
    with pytest.raises(OutputError, match=r"in bucket 'theirs', not BUCKET_NAME \(mine\); pass --allow-bucket theirs"):
        save_outputs(elsewhere, "job", tmp_path, bucket)
    allowed = DownloadRules(extra_buckets=frozenset({"theirs"}))
    assert save_outputs(elsewhere, "job", tmp_path, bucket, rules=allowed)[0].path.read_bytes() == b"RIFF" * 100
    mine = {"outputs": [{"format": "wav", "s3_uri": "s3://mine/key.wav"}]}
    with pytest.raises(OutputError, match="over the 100-byte download limit"):
        save_outputs(mine, "job2", tmp_path, bucket, rules=DownloadRules(max_bytes=100))
    assert save_outputs(mine, "job3", tmp_path, bucket)[0].source == "s3"


def test_a_local_workers_files_are_copied_only_from_its_output_folder(tmp_path):
    worker_dir, out = tmp_path / "worker-outputs", tmp_path / "out"
    (worker_dir / "musicgen").mkdir(parents=True)
    (worker_dir / "musicgen" / "job-0.wav").write_bytes(b"RIFF")
    secret = tmp_path / "secret.txt"
    secret.write_text("key")
    (worker_dir / "musicgen" / "link.wav").symlink_to(secret)
    for path in ("../secret.txt", str(secret), "musicgen/link.wav"):
        with pytest.raises(OutputError, match=f"path {path!r} leaves the worker's output folder"):
            save_outputs({"outputs": [{"format": "wav", "path": path}]}, "job", out, worker_output_dir=worker_dir)
    kept = {"outputs": [{"format": "wav", "path": "musicgen/job-0.wav"}]}
    assert save_outputs(kept, "job", out, worker_output_dir=worker_dir)[0].path.read_bytes() == b"RIFF"


def test_the_commands_download_limits_are_options():
    args = parser().parse_args(
        ["wait", "musicgen", "id", "--max-download-bytes", "5", "--download-timeout", "3", "--allow-bucket", "b"]
    )
    assert download_rules(args) == DownloadRules(5, 3.0, frozenset({"b"}))
    assert download_rules(parser().parse_args(["wait", "musicgen", "id"])) == DownloadRules()


def test_a_refusal_shows_the_message_in_its_body():
    def refused(body: bytes, content_type: str = "application/json") -> Callable[[], None]:
        response = requests.Response()
        response.status_code, response._content = 400, body
        response.headers["Content-Type"] = content_type
        return lambda: response.raise_for_status()

    with pytest.raises(TargetError, match=r"^status: HTTP 400: input: prompt is required$"):
        with_retries(refused(b'{"error": "input: prompt is required"}'), "status")
    with pytest.raises(TargetError, match=r"^run: HTTP 400: Field required$"):
        with_retries(refused(b'{"detail": "Field required"}'), "run")
    with pytest.raises(TargetError, match=r"^run: HTTP 400: no such endpoint$"):
        with_retries(refused(b"no such endpoint\n", "text/plain"), "run")
