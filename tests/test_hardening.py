"""What the adversarial probe found (issue 11), each pinned by a test of the shared library.

Unit tests here need no model and no S3 server; the ones that do are marked integration/tiny.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile

from shared import storage, workers
from shared.audio import decode
from shared.errors import InputError, StorageError
from shared.fetch import fetch_audio_bytes, is_public
from shared.pipeline import Worker
from shared.schemas import AudioSource, JobRequest
from shared.settings import S3Settings, Settings
from shared.testing import refusal
from tests.support import ACCESS_KEY, SECRET_KEY

ALLOWED = Settings(allow_private_urls=True)


class _Voice(JobRequest):
    voice: AudioSource
    level: float = 1.0


def _serve(handler: type[BaseHTTPRequestHandler]):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.unit
@pytest.mark.parametrize("value", ["data:", "data:audio/wav;base64", "data:audio/wav;base64,"])
def test_data_uris_without_a_payload_are_refused_clearly(value):  # item 8
    assert refusal(_Voice, {"voice": value}) == (
        f"voice: a data: URI must be data:<type>;base64,<base64 audio> (got {value!r})"
    )


@pytest.mark.unit
def test_unknown_fields_keep_their_names_and_numbers_must_be_finite():  # item 12
    assert refusal(_Voice, {"voice": "QUJD", "bad key": 1}).startswith("'bad key': unknown field")
    assert refusal(_Voice, {"voice": "QUJD", "": 1}).startswith("'': unknown field")
    assert refusal(_Voice, {"voice": "QUJD", "\u0000": 1}).startswith("'\\x00': unknown field")
    assert (
        refusal(_Voice, {"voice": "QUJD", "level": float("nan")}) == "level: Input should be a finite number (got nan)"
    )
    with pytest.raises(InputError) as caught:
        decode(b"definitely not audio", "voice")
    assert str(caught.value) == "voice: audio does not decode (Format not recognised.)"


@pytest.mark.unit
@pytest.mark.parametrize(
    "address", ["::7f00:1", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "fec0::1", "::ffff:10.0.0.1", "2001::a9fe:a9fe"]
)
def test_ipv6_forms_of_private_addresses_are_not_public(address):  # item 11 (the check itself, no request)
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.unit
def test_public_addresses_stay_public():
    for address in ("8.8.8.8", "2001:4860:4860::8888", "2002:808:808::1", "64:ff9b::808:808"):
        assert is_public(ipaddress.ip_address(address)), address


@pytest.mark.unit
def test_urls_with_userinfo_are_refused_before_any_connection():  # item 7
    with pytest.raises(InputError, match="voice: URLs with a user name or password .* are refused"):
        fetch_audio_bytes("http://user:pass@198.51.100.7/a.wav", "voice", ALLOWED)


@pytest.mark.unit
def test_a_prefix_that_leaves_no_room_for_the_key_is_refused_up_front():  # item 3
    destination = storage.choose_destination(S3Settings(bucket="b"), None, None, "p" * 1000, False)
    with pytest.raises(InputError, match=r"s3_prefix: with w/<job id>-<n>.<ext> appended the keys would be \d+ bytes"):
        storage.check_key_length(destination, "w", "sync-" + "0" * 36, 1)
    storage.check_key_length(
        storage.choose_destination(S3Settings(bucket="b"), None, None, "p" * 900, False), "w", "j", 1
    )


@pytest.mark.unit
def test_job_ids_cannot_leave_the_output_folder_and_results_hide_server_paths(tmp_path):  # item 13
    destination = storage.Destination(storage.DestinationKind.LOCAL)
    key = storage.object_key(destination, "w", "../../x", 0, "wav")
    assert key == "w/_.._x-0.wav"
    location = storage.write_local(tmp_path, key, b"RIFF")
    assert location == {"path": "w/_.._x-0.wav"} and (tmp_path / "w" / "_.._x-0.wav").is_file()
    with pytest.raises(StorageError, match="leaves OUTPUT_DIR"):
        storage.write_local(tmp_path, "../outside.wav", b"RIFF")


@pytest.mark.unit
def test_input_length_is_read_from_the_header_before_decoding():  # item 2
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(4000 * 11), 4000, format="WAV", subtype="PCM_U8")  # 11 s in 44 KB
    with pytest.raises(InputError, match=r"audio: audio is 11.0 s long, over this worker's 10 s cap"):
        decode(buffer.getvalue(), "audio", max_seconds=10)
    assert decode(buffer.getvalue(), "audio", max_seconds=12).duration == 11.0


class _Trickle(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        if self.path == "/cut":
            self.wfile.write(b"RIFF" * 10)  # then the connection closes mid-body
            return
        for _ in range(100):
            self.wfile.write(b"R")
            self.wfile.flush()
            time.sleep(0.2)

    def log_message(self, *args):
        pass


@pytest.mark.unit
def test_input_downloads_have_one_deadline_and_transport_failures_name_the_field():  # item 5
    server, url = _serve(_Trickle)
    try:
        quick = Settings(allow_private_urls=True, input_fetch_timeout_s=1.0)
        started = time.monotonic()
        with pytest.raises(
            InputError, match=r"voice: the download took over 1 s \(INPUT_AUDIO_FETCH_TIMEOUT_SECONDS\)"
        ):
            fetch_audio_bytes(f"{url}/slow", "voice", quick)
        assert time.monotonic() - started < 5
        with pytest.raises(InputError, match=r"voice: the download from 127.0.0.1:\d+ failed \(ProtocolError\)"):
            fetch_audio_bytes(f"{url}/cut", "voice", quick)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.unit
def test_an_s3_endpoint_that_never_answers_fails_within_the_deadline():  # item 4
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does) and never answers
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    s3 = S3Settings(endpoint_url=endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, timeout_s=1.5)
    try:
        started = time.monotonic()
        with pytest.raises(
            StorageError, match=rf"{re.escape(endpoint)} did not answer within 1.5 s \(S3_TIMEOUT_SECONDS\)"
        ):
            storage.upload(s3, "bucket", "k.wav", b"RIFF", "audio/wav")
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def _s3(server, **extra) -> S3Settings:
    return S3Settings(
        endpoint_url=server.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        bucket=server.bucket,
        **extra,
    )


@pytest.mark.integration
def test_outputs_never_replace_an_object_unless_the_operator_allows_it(s3_server):  # item 1
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="important/config.json", Body=b'{"keep": true}')
    with pytest.raises(StorageError, match="already exists; outputs never replace an object"):
        storage.upload(_s3(s3_server), s3_server.bucket, "important/config.json", b"RIFF", "audio/wav")
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key="important/config.json")["Body"].read()
    assert body == b'{"keep": true}'
    storage.upload(
        _s3(s3_server, allow_overwrite=True), s3_server.bucket, "important/config.json", b"RIFF", "audio/wav"
    )
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key="important/config.json")["Body"].read()
    assert body == b"RIFF"


@pytest.mark.integration
def test_only_allowed_buckets_and_prefixes_are_reached(s3_server):  # item 1
    s3 = _s3(s3_server)
    with pytest.raises(
        InputError, match=r"s3_bucket: bucket 'other-bucket' is not allowed on this endpoint \(allowed: audio-results"
    ):
        storage.choose_destination(s3, "other-bucket", None, None, False)
    settings = Settings(s3=s3)
    with pytest.raises(InputError, match="voice: bucket 'private-data' is not allowed"):
        fetch_audio_bytes("s3://private-data/secret.wav", "voice", settings)
    fenced = _s3(s3_server, required_prefix="tenant-a", key_prefix="tenant-a/outputs")
    with pytest.raises(InputError, match=r"s3_key: keys must start with tenant-a/ on this endpoint"):
        storage.choose_destination(fenced, None, "elsewhere/x.wav", None, False)
    assert storage.choose_destination(fenced, None, "tenant-a/x.wav", None, False).key == "tenant-a/x.wav"
    with pytest.raises(InputError, match="voice: keys must start with tenant-a/"):
        fetch_audio_bytes(f"s3://{s3_server.bucket}/in.wav", "voice", Settings(s3=fenced))


@pytest.mark.integration
def test_a_missing_input_object_is_not_reported_as_a_missing_bucket(s3_server):  # item 10
    settings = Settings(s3=_s3(s3_server))
    with pytest.raises(InputError) as caught:
        fetch_audio_bytes(f"s3://{s3_server.bucket}/inputs/none.wav", "voice", settings)
    assert str(caught.value) == f"voice: s3://{s3_server.bucket}/inputs/none.wav does not exist"


@pytest.mark.integration
def test_no_log_line_carries_a_signature_a_credential_or_a_secret(start_on_platform, s3_server):  # item 6
    worker = workers.worker_names()[0]
    case = workers.module(worker, "fixtures").CONTRACT
    platform, handle = start_on_platform(worker, LOG_LEVEL="DEBUG", **s3_server.env())
    posted = platform.result(platform.submit(case.job_input | {"seed": 1}))
    url = posted.body["output"]["outputs"][0]["url"]
    signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", url).group(1)
    logs = handle.logs()
    assert "Handler output" in logs  # the SDK's own DEBUG lines are there...
    for secret in (signature, ACCESS_KEY, SECRET_KEY):
        assert secret not in logs  # ...and carry none of these
    assert not re.search(r"X-Amz-(Signature|Credential)=(?!\*\*\*)", logs)


@pytest.mark.unit
def test_the_sdk_logs_at_our_level():
    import subprocess
    import sys

    from tests.support import REPO

    check = "import shared, os; print(os.environ['RUNPOD_LOG_LEVEL'])"
    for ours, sdk in (("INFO", "INFO"), ("DEBUG", "DEBUG"), ("WARNING", "WARN"), ("ERROR", "ERROR")):
        done = subprocess.run([sys.executable, "-c", check], cwd=REPO, env={"LOG_LEVEL": ours, "PATH": ""},
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.stdout.strip() == sdk, (ours, done.stderr)


@pytest.mark.tiny
def test_concurrent_jobs_with_one_seed_give_one_audio(tiny_volume, tmp_path):  # item 14
    worker = workers.worker_names()[0]
    case = workers.module(worker, "fixtures").CONTRACT
    settings = Settings(
        volume_root=tiny_volume.ensure(worker), model_id=tiny_volume.model_id(worker), output_dir=tmp_path
    )
    started = Worker(workers.adapter_class(worker), settings)
    job = {"input": case.job_input | {"seed": 11, "return_base64": True}}
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(started.run(job | {"id": f"c{n}"}))) for n in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    audio = [[base64.b64decode(o["base64"]) for o in result["outputs"]] for result in results]
    assert audio[0] == audio[1] == audio[2]
