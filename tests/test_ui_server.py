"""The server of `audio-client ui` without a browser: what it lists, and what it refuses before any job."""

from __future__ import annotations

import json

import pytest
import uvicorn
from boto3.exceptions import S3UploadFailedError
from starlette.testclient import TestClient

from audio_client import AudioClient, ClientError
from audio_client.files import Bucket
from audio_client.routing import Route
from audio_client.ui import PAGE_HEADER, SECURITY_HEADERS, TOKEN_COOKIE, create_app, serve
from shared import workers

pytestmark = pytest.mark.unit
PAGE = {PAGE_HEADER: "page"}


def _client() -> AudioClient:
    first = workers.worker_names()[0]
    return AudioClient(routes={first: Route(first, url="http://127.0.0.1:9")}, environ={})


@pytest.fixture
def served(tmp_path):
    app = create_app(_client(), bucket=None, out_dir=tmp_path, inline_max_bytes=100, max_upload_bytes=2000)
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        yield workers.worker_names()[0], http


def test_every_worker_is_listed_with_its_schema_example_and_target_or_how_to_give_it_one(served):
    first, http = served
    listed = {entry["name"]: entry for entry in http.get("/api/workers").json()}
    assert sorted(listed) == workers.worker_names()
    for name, entry in listed.items():
        assert entry["schema"] == workers.request_model(name).model_json_schema()
        assert set(entry["common_fields"]) <= set(entry["schema"]["properties"])
        example = json.loads((workers.HANDLERS / name / "test_input.json").read_text())["input"]
        assert entry["example"] == example
        if name == first:
            assert entry["target"] == "local server http://127.0.0.1:9" and entry["progress_updates"] is False
        else:
            assert f"AUDIO_CLIENT_{name.upper()}=" in entry["target_error"] and "target" not in entry
    page = http.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert http.get("/static/app.js").headers["content-type"].startswith("text/javascript")


def test_jobs_start_only_from_the_page_and_only_under_this_machines_names(served):
    first, http = served
    refused = http.post(f"/api/jobs/{first}", data={"input": "{}"})
    assert refused.status_code == 403 and PAGE_HEADER in refused.json()["error"]
    rebound = http.get("/api/workers", headers={"host": "attacker.example"})
    assert rebound.status_code == 400
    assert http.post(f"/api/jobs/{first}/cancel", headers=PAGE).status_code == 404


def test_bad_submissions_are_refused_with_a_message_naming_the_part(served, tmp_path):
    first, http = served
    assert http.post("/api/jobs/nope", data={"input": "{}"}, headers=PAGE).status_code == 404
    broken = http.post(f"/api/jobs/{first}", data={"input": "{not json"}, headers=PAGE)
    assert broken.status_code == 400 and broken.json()["error"].startswith("input: not valid JSON")
    listed = http.post(f"/api/jobs/{first}", data={"input": "[]"}, headers=PAGE)
    assert listed.json() == {"error": "input: must be a JSON object"}
    small = {"refs.3": ("a.wav", b"RIFF", "audio/wav")}
    no_slot = http.post(f"/api/jobs/{first}", data={"input": '{"refs": [null]}'}, files=small, headers=PAGE)
    assert no_slot.json() == {"error": "refs.3: no slot 3 in the list refs"}
    # Over the inline limit with no bucket: as the client says it, naming the field and the fix.
    large = {"voice": ("big.wav", b"x" * 101, "audio/wav")}
    too_big = http.post(f"/api/jobs/{first}", data={"input": "{}"}, files=large, headers=PAGE)
    assert too_big.status_code == 400
    assert too_big.json()["error"].startswith("voice: ") and "set BUCKET_NAME" in too_big.json()["error"]
    assert http.get("/api/jobs/unknown").status_code == 404


def test_an_upload_is_named_as_the_page_named_it_never_by_a_temporary_path(served, tmp_path):
    first, http = served
    large = {"voice": ("big.wav", b"x" * 101, "audio/wav")}
    too_big = http.post(f"/api/jobs/{first}", data={"input": "{}"}, files=large, headers=PAGE).json()["error"]
    assert too_big.startswith("voice: big.wav: 101 bytes, over the 100-byte inline limit;")

    class FailingBucket(Bucket):
        def client(self):
            class Store:
                @staticmethod
                def upload_file(path: str, bucket: str, key: str) -> None:
                    raise S3UploadFailedError(f"Failed to upload {path} to {bucket}/{key}: AccessDenied")

            return Store()

    bucket = FailingBucket("mine", None, None, None, "us-east-1")
    with TestClient(create_app(_client(), bucket, tmp_path, inline_max_bytes=100), base_url="http://127.0.0.1") as page:
        failed = page.post(f"/api/jobs/{first}", data={"input": "{}"}, files=large, headers=PAGE).json()["error"]
    assert failed.startswith("voice: big.wav: upload to s3://mine/inputs/") and "AccessDenied" in failed
    assert "Failed to upload big.wav to mine/inputs/" in failed and "audio-client-ui-" not in failed + too_big


def test_an_upload_named_dot_dot_is_an_ordinary_file(served):
    first, http = served
    dots = {"refs.3": ("..", b"RIFF", "audio/wav")}
    answer = http.post(f"/api/jobs/{first}", data={"input": '{"refs": [null]}'}, files=dots, headers=PAGE)
    assert answer.status_code == 400 and answer.json() == {"error": "refs.3: no slot 3 in the list refs"}


def test_uploads_are_bounded_in_size(served):
    first, http = served
    over = {"voice": ("big.wav", b"x" * 2000, "audio/wav")}
    refused = http.post(f"/api/jobs/{first}", data={"input": "{}"}, files=over, headers=PAGE)
    assert refused.status_code == 413
    assert refused.json()["error"].endswith("bytes, over the 2000-byte limit (--max-upload-bytes)")
    chunked = http.post(
        f"/api/jobs/{first}",
        content=iter([b"--x\r\n"]),  # a body of unknown length
        headers=PAGE | {"content-type": "multipart/form-data; boundary=x"},
    )
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["error"]


def test_the_ipv6_loopback_is_served_under_its_bracketed_name(served):
    _, http = served
    for host in ("[::1]:8765", "[::1]", "localhost:8765", "127.0.0.1"):
        assert http.get("/api/workers", headers={"host": host}).status_code == 200, host
    for host in ("[::2]:8765", "127.0.0.1.attacker.example", "[::1].attacker.example"):
        assert http.get("/api/workers", headers={"host": host}).status_code == 400, host


def test_every_response_forbids_framing_sniffing_and_other_scripts(served):
    first, http = served
    answers = [
        http.get("/"),
        http.get("/static/app.js"),
        http.get("/api/jobs/unknown"),
        http.get("/", headers={"host": "attacker.example"}),
        http.post(f"/api/jobs/{first}", data={"input": "{}"}),
    ]
    for answer in answers:
        assert {name: answer.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS, answer.url
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert SECURITY_HEADERS["X-Frame-Options"] == "DENY" and SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"


def test_another_interface_needs_a_token_and_every_request_then_carries_it(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(options))
    with pytest.raises(ClientError, match="--host 0.0.0.0: other machines .* set AUDIO_CLIENT_UI_TOKEN") as refused:
        serve(_client(), None, tmp_path, None, 100, "0.0.0.0", 8765)
    assert refused.value.exit_code == 2 and started == []
    serve(_client(), None, tmp_path, None, 100, "0.0.0.0", 8765, token="s3cret")
    serve(_client(), None, tmp_path, None, 100, "[::1]", 8765)  # a loopback address needs none
    assert [options["host"] for options in started] == ["0.0.0.0", "::1"]

    app = create_app(_client(), None, tmp_path, token="s3cret")
    with TestClient(app, base_url="http://192.168.1.20:8765", follow_redirects=False) as http:
        for attempt in (
            http.get("/api/workers"),
            http.get("/?token=wrong"),
            http.get("/", headers={"cookie": f"{TOKEN_COOKIE}=wrong"}),
        ):
            assert attempt.status_code == 401 and "?token=<AUDIO_CLIENT_UI_TOKEN>" in attempt.json()["error"]
        bearer = http.get("/api/workers", headers={"authorization": "Bearer s3cret"})
        assert bearer.status_code == 200
        opened = http.get("/?token=s3cret&x=1")
        assert opened.status_code == 303 and opened.headers["location"] == "/?x=1"
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"{TOKEN_COOKIE}=s3cret;") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert http.get("/api/workers").status_code == 200  # the cookie, from now on
