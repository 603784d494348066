"""S3 upload against a real S3 server: multipart for large files, Content-Type, presigned download."""

from __future__ import annotations

import os

import pytest
import requests

from shared import storage
from shared.settings import S3Settings
from tests.conftest import ACCESS_KEY, SECRET_KEY

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


def test_presigned_url_expiry_is_the_configured_one(s3_server):
    s3 = S3Settings(
        endpoint_url=s3_server.endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, presign_expiry_s=90
    )
    location = storage.upload(s3, s3_server.bucket, "small/take.wav", b"RIFF", "audio/wav")
    assert "X-Amz-Expires=90&" in location["url"] or location["url"].endswith("X-Amz-Expires=90")
