"""Input audio fetching: SSRF refusal, size caps, redirects, s3:// input from a real S3 server."""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.errors import InputError
from shared.fetch import fetch_audio_bytes, is_public
from shared.settings import Settings

pytestmark = pytest.mark.unit

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
        "http://[64:ff9b::a00:1]/a.wav",  # NAT64 well-known prefix onto 10.0.0.1
        "http://[64:ff9b::7f00:1]/a.wav",  # ...onto 127.0.0.1
    ],
)
def test_private_and_loopback_urls_are_refused(url):
    with pytest.raises(InputError, match="resolves to non-public address"):
        fetch_audio_bytes(url, "melody_audio", PRIVATE)


@pytest.mark.parametrize(
    "url",
    [
        "http://[64:ff9b:1::808:808]/a.wav",  # local-use NAT64 (RFC 8215): the operator's own translator
        "http://[64:ff9b:1:ffff::1]/a.wav",
        "http://[::ffff:0:808:808]/a.wav",  # SIIT's IPv4-translated form
        "http://[::ffff:0:a00:1]/a.wav",
        "http://192.0.0.9/a.wav",  # IETF protocol assignments, which Python counts as global
        "http://192.0.0.10/a.wav",
    ],
)
def test_translated_and_protocol_ranges_python_calls_global_are_refused(url):
    host = url.split("//")[1].split("/")[0].strip("[]")
    with pytest.raises(InputError, match=f"melody_audio: URL host '{host}' resolves to non-public address {host};"):
        fetch_audio_bytes(url, "melody_audio", PRIVATE)


@pytest.mark.parametrize("address", ["8.8.8.8", "64:ff9b::808:808", "2606:4700::1111"])
def test_public_addresses_stay_public(address):
    assert is_public(ipaddress.ip_address(address))


def test_a_stalled_dns_lookup_is_bounded_by_the_fetch_deadline(monkeypatch):
    """The resolver blocks until released: the fetch must give up at INPUT_AUDIO_FETCH_TIMEOUT_SECONDS."""
    released = threading.Event()
    resolve = socket.getaddrinfo

    def stalled_resolver(host, *args, **kwargs):
        if host != "stalled.example":
            return resolve(host, *args, **kwargs)
        released.wait(timeout=30)  # without the deadline the fetch waits here, then reads this failure
        raise socket.gaierror(socket.EAI_AGAIN, "released")

    monkeypatch.setattr(socket, "getaddrinfo", stalled_resolver)
    short = PRIVATE.model_copy(update={"input_fetch_timeout_s": 0.2})
    try:
        with pytest.raises(InputError) as caught:
            fetch_audio_bytes("https://stalled.example/a.wav", "melody_audio", short)
    finally:
        released.set()
    assert str(caught.value) == (
        "melody_audio: looking up 'stalled.example' took over 0.2 s (INPUT_AUDIO_FETCH_TIMEOUT_SECONDS)"
    )


def test_unresolvable_host():
    with pytest.raises(InputError, match="does not resolve"):
        fetch_audio_bytes("https://no-such-host.invalid/a.wav", "melody_audio", PRIVATE)


class _RedirectToFile(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(302)
        self.send_header("Location", "file:///etc/passwd")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_redirect_to_another_scheme_is_refused():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RedirectToFile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(InputError, match="melody_audio: only http\\(s\\) URLs are fetched, got 'file'"):
            fetch_audio_bytes(f"http://127.0.0.1:{server.server_address[1]}/a.wav", "melody_audio", ALLOWED)
    finally:
        server.shutdown()
        server.server_close()


def test_allowed_private_url_is_fetched_and_redirects_followed(http_server):
    assert fetch_audio_bytes(f"{http_server}/audio.wav", "melody_audio", ALLOWED) == PAYLOAD
    assert fetch_audio_bytes(f"{http_server}/redirect", "melody_audio", ALLOWED) == PAYLOAD


def test_redirect_is_checked_again(http_server):
    # The first hop is allowed only because private addresses are; with them refused, the loopback
    # server is refused before any request is sent.
    with pytest.raises(InputError, match="non-public address 127.0.0.1"):
        fetch_audio_bytes(f"{http_server}/redirect", "melody_audio", PRIVATE)


def test_size_cap_and_http_errors(http_server):
    tiny_cap = ALLOWED.model_copy(update={"input_audio_max_bytes": 1000})
    with pytest.raises(InputError, match="remote file is 4004 bytes, over the 1000-byte cap"):
        fetch_audio_bytes(f"{http_server}/audio.wav", "melody_audio", tiny_cap)
    with pytest.raises(InputError, match="answered HTTP 404"):
        fetch_audio_bytes(f"{http_server}/missing.wav", "melody_audio", ALLOWED)
