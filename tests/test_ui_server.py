"""The server of `audio-client ui` without a browser: what it lists, and what it refuses before any job."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from audio_client import AudioClient
from audio_client.routing import Route
from audio_client.ui import PAGE_HEADER, create_app
from shared import workers

pytestmark = pytest.mark.unit
PAGE = {PAGE_HEADER: "page"}


@pytest.fixture
def served(tmp_path):
    first = workers.worker_names()[0]
    client = AudioClient(routes={first: Route(first, url="http://127.0.0.1:9")}, environ={})
    app = create_app(client, bucket=None, out_dir=tmp_path, inline_max_bytes=100)
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        yield first, http


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
