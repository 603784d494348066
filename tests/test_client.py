"""The client (audio_client): routing and retries alone, then against real workers.

Against the SDK's local API server (`--rp_serve_api`) with SeaweedFS: the command line end to end. Against
RunPod's job protocol: the same client pointed at tests/runpod_platform.py, whose client API sits on the
SDK's real job loop (progress updates, the stop channel, the sync window), with the SDK's own HTTP client.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile

from audio_client import AudioClient, ClientError
from audio_client.files import Bucket, StreamFile, attach_file, save_outputs
from audio_client.routing import Route, RoutingError, load_routes
from audio_client.targets import NetworkError, with_retries
from scripts import client_schemas
from shared import workers
from tests.runpod_platform import ENDPOINT_ID
from tests.support import free_port, stop, wait_for

REPO = Path(__file__).resolve().parents[1]


def _tone(path: Path, seconds: float = 1.0, rate: int = 32000) -> Path:
    times = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * 440.0 * times), rate)
    return path


@pytest.mark.unit
def test_the_environment_overrides_the_config_file_and_a_missing_target_says_how_to_add_one(tmp_path):
    config = tmp_path / "targets.toml"
    config.write_text('[workers.musicgen]\nendpoint = "abc123"\n\n[workers.voxcpm]\nurl = "http://127.0.0.1:8000/"\n')
    routes = load_routes(config, {"AUDIO_CLIENT_MUSICGEN": "http://127.0.0.1:9000"})
    assert routes["musicgen"] == Route("musicgen", url="http://127.0.0.1:9000")
    assert routes["voxcpm"] == Route("voxcpm", url="http://127.0.0.1:8000")
    assert load_routes(config, {})["musicgen"] == Route("musicgen", endpoint_id="abc123")
    with pytest.raises(ClientError, match="AUDIO_CLIENT_HIGGS_AUDIO=<endpoint id") as refused:
        AudioClient(routes=routes, environ={}).target("higgs_audio")
    assert refused.value.exit_code == 2
    with pytest.raises(ClientError, match="set RUNPOD_API_KEY"):
        AudioClient(routes={"m": Route("m", endpoint_id="abc")}, environ={}).target("m")
    config.write_text('[workers.musicgen]\nendpoint = "abc"\nurl = "http://x"\n')
    with pytest.raises(RoutingError, match="exactly one of endpoint"):
        load_routes(config, {})


@pytest.mark.unit
def test_network_failures_are_retried_with_backoff_then_reported():
    calls, waits = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise requests.ConnectionError("refused")
        return "ok"

    assert with_retries(flaky, "status", sleep=waits.append) == "ok" and waits == [1.0, 2.0]
    with pytest.raises(NetworkError, match="Timeout after 5 tries"):
        with_retries(lambda: (_ for _ in ()).throw(requests.Timeout("slow")), "status", sleep=lambda _: None)


@pytest.mark.unit
def test_a_small_file_goes_inline_and_a_large_one_needs_a_bucket(tmp_path):
    tone = _tone(tmp_path / "tone.wav")
    assert io.BytesIO(__import__("base64").b64decode(attach_file(tone, None))).read() == tone.read_bytes()
    with pytest.raises(ValueError, match="set BUCKET_NAME"):
        attach_file(tone, None, inline_max_bytes=100)


@pytest.mark.unit
def test_the_client_imports_without_torch_and_the_venv_has_its_command():
    check = (
        "import sys, audio_client.cli; "
        "print(sorted(name for name in ('torch', 'shared', 'handlers') if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert (Path(sys.executable).parent / "audio-client").is_file()


@pytest.fixture
def command(installed_client):
    """`audio-client` as a user runs it: the installed wheel's command, from a folder outside the repository."""

    def run(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [installed_client.command, *args],
            cwd=installed_client.home,
            env=installed_client.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.mark.unit
def test_the_shipped_worker_schemas_are_the_workers_own():
    """The page's forms come from audio_client/workers.json, which travels with the client: `make schemas`."""
    assert client_schemas.SCHEMAS.read_text() == client_schemas.render(), "stale: run make schemas"


@pytest.mark.integration
def test_the_installed_wheel_brings_the_client_alone_and_its_help_names_the_routing_rules(installed_client, command):
    listing = (
        "import importlib, importlib.util, pkgutil, sys, audio_client; "
        "[importlib.import_module('audio_client.' + m.name) for m in pkgutil.iter_modules(audio_client.__path__) "
        "if m.name != '__main__']; "
        "print([n for n in ('shared', 'handlers', 'torch') if importlib.util.find_spec(n) or n in sys.modules]); "
        "print(audio_client.__file__)"
    )
    python = str(installed_client.venv / "bin" / "python")
    found = subprocess.run(
        [python, "-c", listing], cwd=installed_client.home, env=installed_client.env(), capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    modules, location = found.stdout.splitlines()
    assert modules == "[]" and Path(location).is_relative_to(installed_client.venv)
    helped = command("--help", env={})
    assert helped.returncode == 0
    assert "AUDIO_CLIENT_<WORKER>=<RunPod endpoint id" in helped.stdout and "./audio-client.toml" in helped.stdout
    assert ".py" not in helped.stdout  # rules, not a source file to read


@pytest.mark.integration
def test_the_installed_page_lists_every_worker_with_its_schema(installed_client):
    port = free_port()
    log = installed_client.home / "ui.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [installed_client.command, "ui", "--port", str(port), "--out", str(installed_client.home / "ui")],
            cwd=installed_client.home,
            env=installed_client.env(AUDIO_CLIENT_MUSICGEN="http://127.0.0.1:9"),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}/api/workers"
        wait_for(lambda: requests.get(url, timeout=5).ok, "audio-client ui", 60, server, log)
        listed = {entry["name"]: entry for entry in requests.get(url, timeout=5).json()}
    finally:
        stop(server)
    assert sorted(listed) == workers.worker_names()
    for name, entry in listed.items():
        assert entry["schema"] == workers.request_model(name).model_json_schema()
    assert listed["musicgen"]["target"] == "local server http://127.0.0.1:9"
    assert "AUDIO_CLIENT_VOXCPM" in listed["voxcpm"]["target_error"]


def _saved(stdout: str) -> list[tuple[Path, float, str, str]]:
    """The command's lines: path, duration, format, (from source)."""
    rows = []
    for line in stdout.strip().splitlines():
        path, duration, audio_format, source = line.split("\t")
        rows.append((Path(path), float(duration.removesuffix(" s")), audio_format, source))
    return rows


@pytest.mark.integration
def test_the_command_runs_sync_and_async_jobs_on_a_local_server_and_saves_their_audio(start_worker, command, tmp_path):
    worker = start_worker("musicgen")
    env = {"AUDIO_CLIENT_MUSICGEN": worker.url}
    done = command(
        "run", "musicgen", "--set", "prompt=warm piano", "--set", "duration=0.5", "--set", "seed=3",
        "--out", str(tmp_path), "--worker-output-dir", str(worker.log.parent / "outputs"), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ((path, duration, audio_format, source),) = _saved(done.stdout)
    assert (duration, audio_format, source) == (0.5, "wav", "(from path)")
    assert soundfile.info(path).duration == 0.5 and path.name.endswith("-0.wav")

    request = tmp_path / "request.json"  # a request file, with a flag on top of it
    request.write_text(json.dumps({"input": {"prompt": "x", "duration": 0.5, "return_base64": True}}))
    job_id = command("run", "musicgen", "--mode", "async", "--input", str(request), "--set", "format=flac",
                      env=env).stdout.strip()  # fmt: skip
    waited = command("wait", "musicgen", job_id, "--out", str(tmp_path), env=env)
    assert waited.returncode == 0, waited.stderr
    assert _saved(waited.stdout)[0][0] == tmp_path / f"{job_id}-0.flac"

    refused = command("run", "musicgen", "--set", "prompt=x", "--set", "duration=900", env=env)
    assert refused.returncode == 1
    assert "duration: Input should be less than or equal to 300 (got 900)" in refused.stderr
    plain = command("stream", "musicgen", "--to", str(tmp_path / "x.wav"), "--set", "prompt=x", env=env)
    assert plain.returncode == 1 and "Stream not supported, handler must be a generator" in plain.stderr
    cannot = command("cancel", "musicgen", job_id, env=env)
    assert cannot.returncode == 2 and "cannot cancel" in cannot.stderr
    unreachable = command("status", "musicgen", "x", env={"AUDIO_CLIENT_MUSICGEN": "http://127.0.0.1:9"}, timeout=60)
    assert unreachable.returncode == 3 and "after 5 tries" in unreachable.stderr


@pytest.mark.integration
def test_input_files_go_inline_or_through_the_bucket_and_outputs_come_back_from_url_or_s3(
    start_worker, s3_server, command, tmp_path
):
    worker = start_worker("musicgen", MODEL_ID="tiny-random/musicgen-melody", **s3_server.env())
    env = {"AUDIO_CLIENT_MUSICGEN": worker.url, **s3_server.env()}
    tone = _tone(tmp_path / "tune.wav")
    common = ["run", "musicgen", "--set", "prompt=calm", "--set", "duration=0.5", "--set", "seed=4",
              "--file", f"melody_audio={tone}"]  # fmt: skip
    inline = command(*common, "--out", str(tmp_path / "inline"), env=env)
    through = command(*common, "--inline-max-bytes", "1000", "--out", str(tmp_path / "bucket"), env=env)
    assert inline.returncode == 0 and through.returncode == 0, inline.stderr + through.stderr
    uploaded = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix="inputs/")["Contents"]
    assert len(uploaded) == 1 and uploaded[0]["Key"].endswith("-tune.wav")
    (inline_row,), (bucket_row,) = _saved(inline.stdout), _saved(through.stdout)
    assert inline_row[3] == bucket_row[3] == "(from url)"  # the presigned URL
    # The same melody and seed, sent either way: the same song.
    assert np.array_equal(soundfile.read(inline_row[0])[0], soundfile.read(bucket_row[0])[0])

    result = worker.output({"prompt": "calm", "duration": 0.5, "seed": 4})
    without_url = {"outputs": [{key: value for key, value in result["outputs"][0].items() if key != "url"}]}
    (from_s3,) = save_outputs(without_url, "s3job", tmp_path / "s3", Bucket.from_environment(s3_server.env()))
    assert from_s3.source == "s3" and soundfile.info(from_s3.path).duration == 0.5


@pytest.mark.integration
def test_on_runpods_protocol_progress_arrives_sync_falls_back_to_polling_and_cancel_stops_the_job(
    start_on_platform,
):
    platform, handle = start_on_platform("musicgen")
    client = AudioClient(
        routes={"musicgen": Route("musicgen", endpoint_id=ENDPOINT_ID)}, environ=platform.client_env(), poll_s=0.1
    )
    updates: list[dict] = []
    job_id = client.submit("musicgen", {"prompt": "a long piece", "duration": 70.0, "seed": 1})
    result = client.wait("musicgen", job_id, updates.append, timeout_s=300)
    assert result.ok and result.output["outputs"][0]["duration_seconds"] == 70.0
    fractions = [update["progress"] for update in updates if update.get("stage") == "generating"]
    assert fractions and all(0 < fraction <= 1 for fraction in fractions), updates

    platform.state.sync_window_s = 0.2  # a job longer than the sync window: /runsync answers IN_PROGRESS
    notes: list[dict] = []
    late = client.run_sync("musicgen", {"prompt": "x", "duration": 8.0, "seed": 2}, notes.append)
    assert late.ok and "after the sync window" in notes[0]["note"]
    platform.state.sync_window_s = 30
    refused = client.run_sync("musicgen", {"prompt": "x", "duration": 900})
    assert refused.status == "FAILED" and "less than or equal to 300" in refused.error

    long_job = client.submit("musicgen", {"prompt": "a long piece", "duration": 120.0, "seed": 3})
    wait_for(lambda: client.status("musicgen", long_job)["status"] == "IN_PROGRESS", "the long job's start", 60)
    time.sleep(1.0)
    assert client.cancel("musicgen", long_job)["status"] == "CANCELLED"
    wait_for(lambda: f"job {long_job} | job stopped" in handle.logs(), "the worker stopping the job", 60)
    assert client.status("musicgen", long_job)["status"] == "CANCELLED"

    wrong_key = AudioClient(routes=client.routes, environ=platform.client_env() | {"RUNPOD_API_KEY": "wrong"})
    with pytest.raises(ClientError, match="Unauthorized|401") as unauthorized:
        wrong_key.status("musicgen", long_job)
    assert unauthorized.value.exit_code == 2
    print(json.dumps({"progress updates seen": len(updates), "fractions": fractions}))


def _voxcpm_job(seed: int) -> dict:
    return {"target_text": "Streamed, chunk by chunk.", "inference_timesteps": 2, "max_len": 200, "seed": seed}


@pytest.mark.integration
def test_a_stream_written_as_it_arrives_equals_the_uploaded_result(start_on_platform, start_worker, command, tmp_path):
    platform, handle = start_on_platform("voxcpm", STREAM_AUDIO="1")
    client = AudioClient(
        routes={"voxcpm": Route("voxcpm", endpoint_id=ENDPOINT_ID)}, environ=platform.client_env(), poll_s=0.1
    )
    sink = StreamFile(tmp_path / "streamed.wav")
    seen: list[float] = []
    job_id = client.submit("voxcpm", _voxcpm_job(6) | {"stream": True})
    result = client.stream("voxcpm", job_id, lambda chunk: (sink.write(chunk), seen.append(sink.seconds)))
    sink.close()
    assert result.ok, result
    uploaded = soundfile.read(handle.output_file(result.output["outputs"][0]["path"]))[0]
    assert np.array_equal(soundfile.read(sink.path)[0], uploaded) and len(seen) >= 1

    local = start_worker("voxcpm", STREAM_AUDIO="1")
    done = command(
        "stream", "voxcpm", "--to", str(tmp_path / "local.wav"), "--out", str(tmp_path / "local"),
        "--worker-output-dir", str(local.log.parent / "outputs"),
        *(argument for name, value in _voxcpm_job(7).items() for argument in ("--set", f"{name}={value}")),
        env={"AUDIO_CLIENT_VOXCPM": local.url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    streamed_line, saved_line = done.stdout.strip().splitlines()
    assert streamed_line.startswith(str(tmp_path / "local.wav"))
    saved = Path(saved_line.split("\t")[0])
    assert np.array_equal(soundfile.read(tmp_path / "local.wav")[0], soundfile.read(saved)[0])
