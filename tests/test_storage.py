"""S3 upload against a real S3 server: multipart for large files, Content-Type, presigned download."""

from __future__ import annotations

import os

import numpy as np
import pytest
import requests

from shared import storage
from shared.audio import Audio, encode
from shared.errors import InputError, StorageError
from shared.fetch import fetch_artifact, fetch_audio_bytes
from shared.formats import AUDIO_FORMATS
from shared.settings import S3Settings, Settings
from tests.support import ACCESS_KEY, SECRET_KEY, download

pytestmark = pytest.mark.integration


def test_large_audio_is_uploaded_in_parts_and_downloads_whole(s3_server):
    s3 = S3Settings(endpoint_url=s3_server.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    data = os.urandom(40 * 1024 * 1024)  # over the 16 MiB multipart threshold: three parts
    location = storage.upload(s3, s3_server.bucket, "big/take.flac", data, "audio/flac")
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key="big/take.flac")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload's ETag counts its parts
    assert head["ContentType"] == "audio/flac" and head["ContentLength"] == len(data)
    response = requests.get(location["url"], timeout=60)
    assert response.status_code == 200 and response.content == data


JUST_MULTIPART = bytes(16 * 1024 * 1024 + 1)  # the smallest output sent in parts (two)


def test_a_large_output_racing_another_writer_never_replaces_its_object(s3_server):
    """Issue 26, item 7: the object appears after the HEAD check, while our parts upload (another job on the same
    key). The conditional CompleteMultipartUpload refuses to replace it (SeaweedFS honours If-None-Match there)."""
    s3 = S3Settings(endpoint_url=s3_server.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    key = "race/take.flac"
    events = storage._client(s3).meta.events

    def other_job_writes_first(**_):
        if not s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=key).get("Contents"):
            s3_server.client().put_object(Bucket=s3_server.bucket, Key=key, Body=b"the other job's take")

    events.register("before-call.s3.UploadPart", other_job_writes_first)
    try:
        with pytest.raises(StorageError, match=f"upload to s3://{s3_server.bucket}/{key}: the object already exists"):
            storage.upload(s3, s3_server.bucket, key, JUST_MULTIPART, "audio/flac")
    finally:
        events.unregister("before-call.s3.UploadPart", other_job_writes_first)
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    assert body == b"the other job's take"
    assert not s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket, Prefix=key).get("Uploads")


def test_a_large_output_onto_an_existing_key_is_refused_before_any_part_is_sent(s3_server):
    s3 = S3Settings(endpoint_url=s3_server.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="kept/take.flac", Body=b"kept")
    with pytest.raises(StorageError, match="already exists; outputs never replace an object"):
        storage.upload(s3, s3_server.bucket, "kept/take.flac", JUST_MULTIPART, "audio/flac")
    assert not s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket, Prefix="kept/").get("Uploads")


@pytest.mark.parametrize("audio_format", list(AUDIO_FORMATS))
def test_every_format_uploads_with_its_content_type_and_decodes_to_its_duration(s3_server, audio_format):
    s3 = S3Settings(endpoint_url=s3_server.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    tone = Audio((0.3 * np.sin(np.arange(32000) / 5.0))[:, None].astype(np.float32), 32000)
    data, rate = encode(tone, audio_format)
    info = AUDIO_FORMATS[audio_format]
    location = storage.upload(s3, s3_server.bucket, f"formats/take.{info.extension}", data, info.content_type)
    response, samples, decoded_rate = download(location["url"])
    assert response.headers["Content-Type"] == info.content_type and decoded_rate == rate
    # Lossy codecs pad by a few milliseconds (encoder delay); the duration must still match to 20 ms.
    assert abs(samples.shape[0] / rate - 1.0) <= 0.02


def test_presigned_url_expiry_is_the_configured_one(s3_server):
    s3 = S3Settings(
        endpoint_url=s3_server.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, presign_expiry_s=90
    )
    location = storage.upload(s3, s3_server.bucket, "small/take.wav", b"RIFF", "audio/wav")
    assert "X-Amz-Expires=90&" in location["url"] or location["url"].endswith("X-Amz-Expires=90")


PAYLOAD = b"RIFF" + bytes(4000)


def test_s3_input_is_read_with_a_cap(s3_server):
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="inputs/melody.wav", Body=PAYLOAD)
    s3 = S3Settings(
        endpoint_url=s3_server.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, bucket=s3_server.bucket
    )
    settings = Settings(s3=s3)
    uri = f"s3://{s3_server.bucket}/inputs/melody.wav"
    assert fetch_audio_bytes(uri, "melody_audio", settings) == PAYLOAD
    with pytest.raises(InputError, match="over the 100-byte cap"):
        fetch_audio_bytes(uri, "melody_audio", settings.model_copy(update={"input_audio_max_bytes": 100}))
    with pytest.raises(InputError, match="melody_audio: s3://audio-results/inputs/none.wav does not exist"):
        fetch_audio_bytes(f"s3://{s3_server.bucket}/inputs/none.wav", "melody_audio", settings)


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
