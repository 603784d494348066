"""The page of `audio-client ui`, in a real headless Chromium (Debian's, driven by Playwright).

The page's server runs as the command runs (`audio-client ui`), pointed at the SDK's real local API
servers of MusicGen and VoxCPM with SeaweedFS, and at RunPod's job protocol (tests/runpod_platform.py, on
the SDK's real job loop) for progress updates, cancellation and streamed audio. Screenshots at desktop and
phone width land in test-artifacts/ui/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile

from audio_client import AudioClient
from audio_client.routing import Route
from conftest import InstalledClient
from shared import workers
from tests.runpod_platform import ENDPOINT_ID
from tests.support import free_port, stop, wait_for

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "ui"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
DONE = "#job[data-status=COMPLETED], #job[data-status=FAILED], #job[data-status=CANCELLED]"


def chromium() -> str:
    """CHROMIUM, else Debian's Chromium (make browser installs it); the tests need one, they never skip."""
    found = os.environ.get("CHROMIUM") or next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
    )
    assert found, "no Chromium: run `make browser`, or set CHROMIUM=/path/to/chromium"
    return found


class PageServer:
    """`audio-client ui` as a user starts it, on a free port, with its own targets."""

    def __init__(self, client: InstalledClient, folder: Path, env: dict[str, str], *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = folder / "saved"
        self.log = folder / "ui.log"
        command = [client.command, "ui", "--port", str(self.port)]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*command, "--out", str(self.out), *flags],
                cwd=client.home,
                env=client.env(**env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(
            lambda: requests.get(f"{self.url}/api/workers", timeout=5).ok, "audio-client ui", 60, self.process, self.log
        )

    def close(self) -> None:
        stop(self.process)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Streamed audio starts without a real click in a headless run.
        launched = playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def local_servers(start_worker, s3_server):
    """MusicGen (its melody checkpoint) and VoxCPM on the SDK's local API server, writing to SeaweedFS."""
    return {
        "musicgen": start_worker("musicgen", MODEL_ID="tiny-random/musicgen-melody", **s3_server.env()),
        "voxcpm": start_worker("voxcpm", **s3_server.env()),
    }


@pytest.fixture(scope="module")
def page_server(local_servers, s3_server, installed_client, tmp_path_factory) -> Iterator[PageServer]:
    env = {f"AUDIO_CLIENT_{name.upper()}": worker.url for name, worker in local_servers.items()}
    # Files over 1000 bytes go through the bucket, as the client sends them.
    server = PageServer(
        installed_client, tmp_path_factory.mktemp("ui"), env | s3_server.env(), "--inline-max-bytes", "1000"
    )
    yield server
    server.close()


@pytest.fixture
def open_page(browser):
    pages = []

    def open_at(url: str, viewport: dict[str, int] = DESKTOP):
        page = browser.new_page(viewport=viewport)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.problems = problems
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        pages.append(page)
        return page

    yield open_at
    for page in pages:
        assert page.problems == [], page.problems  # no script error, no failed load, on any page
        page.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def pick(page, worker: str) -> None:
    page.select_option("#worker", worker)
    page.wait_for_selector(f"#request-title:text-is('{worker}')")
    page.evaluate("document.getElementById('common').open = true")


def field(page, name: str, css: str = "input[type=text], textarea, select"):
    return page.locator(f"[data-field={name}]").locator(css).first


def wait_done(page, timeout_s: float = 900) -> str:
    """The job's final status. The bound only stops a hung test: a busy machine (CI, or tests beside other work)
    generates many times slower than an idle one, so it is far above any job's usual time."""
    page.wait_for_selector(DONE, timeout=timeout_s * 1000)
    return page.get_attribute("#job", "data-status")


def loaded_durations(page) -> list[float]:
    """Each output's <audio> once the browser has read its metadata: its duration as the browser sees it."""
    page.wait_for_function(
        "[...document.querySelectorAll('figure.output audio')].every((audio) => audio.readyState >= 1)"
        " && document.querySelectorAll('figure.output audio').length > 0",
        timeout=60000,
    )
    return page.evaluate("[...document.querySelectorAll('figure.output audio')].map((audio) => audio.duration)")


def record_progress(page) -> None:
    """Keep every stage and fraction the page shows (a poll can pass faster than the test looks)."""
    page.evaluate(
        """() => {
            window.progressSeen = [];
            const box = document.getElementById('progress-box');
            new MutationObserver(() => window.progressSeen.push({...box.dataset}))
                .observe(box, {attributes: true});
        }"""
    )


def test_every_workers_form_renders_every_field_of_its_schema(page_server, open_page):
    page = open_page(page_server.url)
    for viewport, suffix in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(viewport)
        for worker in workers.worker_names():
            pick(page, worker)
            schema = workers.request_model(worker).model_json_schema()
            for name in schema["properties"]:
                assert page.locator(f"[data-field={name}]").is_visible(), f"{worker}: {name} not shown"
            kinds = dict(
                page.eval_on_selector_all("[data-field]", "all => all.map(e => [e.dataset.field, e.dataset.kind])")
            )
            assert set(kinds) == set(schema["properties"]), worker
            assert kinds["format"] == "choice" and kinds["seed"] == "number" and kinds["return_base64"] == "boolean"
            # Every input audio field offers a file picker (found from the schema: contentMediaType audio/*).
            for name, property in schema["properties"].items():
                if "audio/*" in json.dumps(property):
                    assert kinds[name] in ("audio", "audios"), f"{worker}: {name} is {kinds[name]}"
                    assert page.locator(f"[data-field={name}] input[type=file]").count() >= 1
            if worker not in ("musicgen", "voxcpm"):
                assert f"AUDIO_CLIENT_{worker.upper()}" in page.inner_text("#target")
                assert page.is_disabled("#submit")
            screenshot(page, f"form-{worker}-{suffix}")
    pick(page, "musicgen")
    kinds = dict(page.eval_on_selector_all("[data-field]", "all => all.map(e => [e.dataset.field, e.dataset.kind])"))
    assert kinds["prompt"] == "lines" and kinds["melody_audio"] == "audio" and kinds["duration"] == "number"
    assert page.locator("[data-field=duration] input[type=range]").count() == 1  # bounded: a slider too
    assert page.locator("[data-field=seed] input[type=range]").count() == 0  # 2^32 values: a box only
    pick(page, "voxcpm")
    kinds = dict(page.eval_on_selector_all("[data-field]", "all => all.map(e => [e.dataset.field, e.dataset.kind])"))
    assert kinds["target_text"] == "longtext" and kinds["task"] == "choice" and kinds["stream"] == "boolean"


def test_a_bad_value_shows_the_workers_own_error_and_the_next_job_runs(page_server, local_servers, open_page):
    page = open_page(page_server.url)
    pick(page, "musicgen")
    field(page, "duration").fill("9999")
    field(page, "top_k").fill("many")
    page.click("#submit")
    assert wait_done(page) == "FAILED"
    shown = page.inner_text("#job-error")
    client = AudioClient(routes={"musicgen": Route("musicgen", url=local_servers["musicgen"].url)}, environ={})
    request = {"prompt": ["lo-fi hip hop beat with warm piano chords, 80 bpm"], "duration": 9999, "top_k": "many",
               "guidance_scale": 3, "temperature": 1, "seed": 42, "format": "wav"}  # fmt: skip
    direct = client.run_sync("musicgen", request)
    assert shown == direct.error and "duration" in shown and "top_k" in shown, shown
    assert page.locator("figure.output").count() == 0
    screenshot(page, "refused-desktop")

    field(page, "duration").fill("1")
    field(page, "top_k").fill("250")
    page.click("#submit")
    assert wait_done(page) == "COMPLETED"
    assert page.inner_text("#job-error") == "" and page.is_hidden("#job-error")


def test_a_job_shows_progress_then_players_of_the_expected_duration_and_its_parameters(page_server, open_page):
    page = open_page(page_server.url)
    pick(page, "musicgen")
    field(page, "prompt").fill("warm piano\nbright synth arpeggio")  # two prompts: two outputs
    field(page, "duration").fill("1.5")
    field(page, "seed").fill("7")
    field(page, "format", "select").select_option(label="flac")
    record_progress(page)
    page.click("#submit")
    assert wait_done(page) == "COMPLETED"
    stages = [seen["stage"] for seen in page.evaluate("window.progressSeen")]
    # The local server runs a job inside its first status call: whether a poll sees it running first is a
    # race, so the notice may or may not show between submitting and completed; nothing else may.
    assert stages[0] == "submitting" and stages[-1] == "completed", stages
    assert set(stages) <= {"submitting", "running on the local test server", "completed"}, stages
    assert loaded_durations(page) == pytest.approx([1.5, 1.5], abs=0.01)
    captions = page.locator("figure.output figcaption").all_inner_texts()
    assert all("1.5 s · flac · 32000 Hz · 1 ch" in caption for caption in captions), captions
    parameters = json.loads(page.inner_text("#parameters"))
    assert parameters["seed"] == 7 and parameters["prompt"] == ["warm piano", "bright synth arpeggio"]
    # The download link gives the same file the player plays: a FLAC of 1.5 s.
    link = page.locator("figure.output a[download]").first.get_attribute("href")
    download = page.request.get(page_server.url + link)
    assert download.ok and "attachment" in download.headers["content-disposition"]
    assert download.headers["content-type"] == "audio/flac"
    saved = sorted(page_server.out.glob("*.flac"))
    assert len(saved) == 2 and soundfile.info(saved[0]).duration == 1.5
    assert download.body() in {path.read_bytes() for path in saved}
    screenshot(page, "completed-desktop")
    page.set_viewport_size(PHONE)
    screenshot(page, "completed-phone")

    # "Use these parameters" puts the job back in the form, seed included: the same request again.
    page.set_viewport_size(DESKTOP)
    field(page, "seed").fill("")
    page.click("#reuse")
    assert field(page, "seed").input_value() == "7" and field(page, "duration").input_value() == "1.5"


def test_an_input_audio_file_is_uploaded_as_the_client_sends_it(page_server, s3_server, open_page, tmp_path):
    rate = 16000
    times = np.arange(rate) / rate
    voice = tmp_path / "my voice.wav"
    soundfile.write(voice, 0.3 * np.sin(2 * np.pi * 220.0 * times), rate)
    page = open_page(page_server.url, PHONE)
    pick(page, "voxcpm")
    field(page, "target_text").fill("Hello from the browser.")
    field(page, "prompt_text").fill("A low hum.")
    field(page, "max_len").fill("40")
    page.set_input_files("[data-field=prompt_audio] input[type=file]", str(voice))
    page.click("#submit")
    assert wait_done(page) == "COMPLETED", page.inner_text("#job-error")
    parameters = json.loads(page.inner_text("#parameters"))
    assert parameters["prompt_audio"] == "<provided>" and parameters["prompt_text"] == "A low hum."
    (duration,) = loaded_durations(page)
    assert duration > 0
    # Over --inline-max-bytes: it went through the bucket, under inputs/, as `audio-client run --file` does.
    listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix="inputs/")
    assert any(item["Key"].endswith("-my voice.wav") for item in listed.get("Contents", []))
    screenshot(page, "uploaded-phone")


def test_on_runpod_progress_arrives_and_cancel_stops_the_job(start_on_platform, open_page, installed_client, tmp_path):
    platform, handle = start_on_platform("musicgen")
    env = {"AUDIO_CLIENT_MUSICGEN": ENDPOINT_ID, **platform.client_env()}
    server = PageServer(installed_client, tmp_path, env, "--worker-output-dir", str(handle.log.parent / "outputs"))
    try:
        page = open_page(server.url)
        assert "RunPod endpoint" in page.inner_text("#target")
        field(page, "duration").fill("35")  # two model windows: progress within and across them
        record_progress(page)
        # The result reaches the page only once it has shown progress: a fast job must not finish between polls.
        platform.hold_results()
        page.click("#submit")
        page.wait_for_function(
            "() => window.progressSeen.some((item) => item.stage === 'generating' && item.fraction)", timeout=900_000
        )
        platform.release_results()
        assert wait_done(page) == "COMPLETED", page.inner_text("#job-error")
        seen = page.evaluate("window.progressSeen")
        fractions = [float(item["fraction"]) for item in seen if item["stage"] == "generating" and item["fraction"]]
        assert fractions and all(0 < fraction <= 1 for fraction in fractions), seen
        assert loaded_durations(page) == pytest.approx([35.0], abs=0.01)

        field(page, "duration").fill("200")
        page.click("#submit")
        page.wait_for_selector("#progress-box[data-stage=generating]", timeout=120000)
        page.click("#cancel")
        assert wait_done(page) == "CANCELLED"
        wait_for(lambda: "job stopped" in handle.logs(), "the worker stopping the job", 60)
    finally:
        server.close()


def test_a_streaming_deployment_plays_as_chunks_arrive(start_on_platform, open_page, installed_client, tmp_path):
    platform, handle = start_on_platform("voxcpm", STREAM_AUDIO="1")
    env = {"AUDIO_CLIENT_VOXCPM": ENDPOINT_ID, **platform.client_env()}
    server = PageServer(installed_client, tmp_path, env, "--worker-output-dir", str(handle.log.parent / "outputs"))
    try:
        page = open_page(server.url)
        pick(page, "voxcpm")
        field(page, "target_text").fill("Streamed to the page, chunk by chunk.")
        field(page, "inference_timesteps").fill("2")
        field(page, "max_len").fill("200")
        page.check("[data-field=stream] input[type=checkbox]")
        page.evaluate(  # the job's status when the first chunk starts playing
            """() => new MutationObserver((changes, observer) => {
                window.statusAtFirstChunk = document.getElementById('job').dataset.status;
                observer.disconnect();
            }).observe(document.getElementById('stream-info'), {attributeFilter: ['data-scheduled']})"""
        )
        page.click("#submit")
        assert wait_done(page) == "COMPLETED", page.inner_text("#job-error")
        assert page.evaluate("window.statusAtFirstChunk") == "IN_PROGRESS"  # played before the job ended
        info = page.locator("#stream-info")
        wait_for(lambda: info.get_attribute("data-scheduled") == info.get_attribute("data-chunks"), "playback", 30)
        streamed = float(info.get_attribute("data-seconds"))
        (final,) = loaded_durations(page)
        assert int(info.get_attribute("data-chunks")) >= 1 and streamed == pytest.approx(final, abs=0.01)
        screenshot(page, "streamed-desktop")
    finally:
        server.close()
