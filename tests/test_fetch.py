"""Input audio fetching: SSRF refusal, size caps, redirects, s3:// input from a real S3 server."""

from __future__ import annotations

import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.errors import InputError
from shared.fetch import fetch_artifact, fetch_audio_bytes
from shared.settings import S3Settings, Settings
from tests.conftest import ACCESS_KEY, SECRET_KEY

PAYLOAD = b"RIFF" + bytes(4000)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/audio.wav")
            self.end_headers()
            return
        if self.path == "/audio.wav":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
            return
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


PRIVATE = Settings()
ALLOWED = Settings(allow_private_urls=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.wav",
        "http://localhost:8080/a.wav",
        "https://10.1.2.3/a.wav",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.wav",
        "http://192.168.0.10/a.wav",
    ],
)
def test_private_and_loopback_urls_are_refused(url):
    with pytest.raises(InputError, match="resolves to non-public address"):
        fetch_audio_bytes(url, "melody_audio", PRIVATE)


def test_unresolvable_host_and_bad_scheme():
    with pytest.raises(InputError, match="does not resolve"):
        fetch_audio_bytes("https://no-such-host.invalid/a.wav", "melody_audio", PRIVATE)


def test_allowed_private_url_is_fetched_and_redirects_followed(http_server):
    assert fetch_audio_bytes(f"{http_server}/audio.wav", "melody_audio", ALLOWED) == PAYLOAD
    assert fetch_audio_bytes(f"{http_server}/redirect", "melody_audio", ALLOWED) == PAYLOAD


def test_redirect_is_checked_again(http_server):
    # The first hop is allowed only because private addresses are; with them refused, the loopback
    # server is refused before any request is sent.
    with pytest.raises(InputError, match="non-public address 127.0.0.1"):
        fetch_audio_bytes(f"{http_server}/redirect", "melody_audio", PRIVATE)


def test_size_cap_and_http_errors(http_server):
    tiny_cap = replace(ALLOWED, input_audio_max_bytes=1000)
    with pytest.raises(InputError, match="remote file is 4004 bytes, over the 1000-byte cap"):
        fetch_audio_bytes(f"{http_server}/audio.wav", "melody_audio", tiny_cap)
    with pytest.raises(InputError, match="answered HTTP 404"):
        fetch_audio_bytes(f"{http_server}/missing.wav", "melody_audio", ALLOWED)


@pytest.mark.integration
def test_s3_input_is_read_with_a_cap(s3_server):
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="inputs/melody.wav", Body=PAYLOAD)
    settings = Settings(
        s3=S3Settings(endpoint_url=s3_server.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    )
    uri = f"s3://{s3_server.bucket}/inputs/melody.wav"
    assert fetch_audio_bytes(uri, "melody_audio", settings) == PAYLOAD
    with pytest.raises(InputError, match="over the 100-byte cap"):
        fetch_audio_bytes(uri, "melody_audio", replace(settings, input_audio_max_bytes=100))
    with pytest.raises(InputError, match="melody_audio: reading s3://audio-results/inputs/none.wav"):
        fetch_audio_bytes(f"s3://{s3_server.bucket}/inputs/none.wav", "melody_audio", settings)


@pytest.mark.integration
def test_operator_artifacts_come_from_files_and_s3(s3_server, tmp_path):
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="loras/a.safetensors", Body=PAYLOAD)
    settings = Settings(
        s3=S3Settings(endpoint_url=s3_server.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    )
    assert fetch_artifact(f"s3://{s3_server.bucket}/loras/a.safetensors", "LORA", settings, 10_000) == PAYLOAD
    local = tmp_path / "a.safetensors"
    local.write_bytes(PAYLOAD)
    assert fetch_artifact(f"file://{local}", "LORA", settings, 10_000) == PAYLOAD
    with pytest.raises(InputError, match="LORA: .* is 4004 bytes, over the 100-byte cap"):
        fetch_artifact(f"file://{local}", "LORA", settings, 100)
    with pytest.raises(InputError, match="LORA: must be a file://, https:// or s3:// URI"):
        fetch_artifact("ftp://host/a", "LORA", settings, 100)
