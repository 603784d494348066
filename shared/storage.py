"""Where encoded audio goes: an S3 bucket, a local folder (no bucket configured), or inline base64.

S3 credentials: BUCKET_ACCESS_KEY_ID / BUCKET_SECRET_ACCESS_KEY when set, else boto3's standard chain
(AWS_* variables, shared files, instance roles). BUCKET_ENDPOINT_URL selects a non-AWS store
(R2, GCS, MinIO, SeaweedFS...): path-style addressing, and checksums only where the operation
requires them, which such stores accept.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import posixpath
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from shared.errors import InputError, StorageError, WorkerError
from shared.formats import AUDIO_FORMATS
from shared.settings import S3Settings, Settings

_TRANSFER = TransferConfig(multipart_threshold=16 * 1024 * 1024, multipart_chunksize=16 * 1024 * 1024)
_ACCESS_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "403"}


@cache
def _client(s3: S3Settings) -> Any:
    config = Config(
        s3={"addressing_style": "path" if s3.endpoint_url else "auto"},
        retries={"max_attempts": 4, "mode": "standard"},  # exponential backoff on throttling and 5xx
        connect_timeout=5,
        read_timeout=min(60.0, s3.timeout_s),
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key_id.get_secret_value() if s3.access_key_id else None,
        aws_secret_access_key=s3.secret_access_key.get_secret_value() if s3.secret_access_key else None,
        region_name=s3.region or "us-east-1",
        config=config,
    )


# S3 calls run here so that each has one deadline, retries included (botocore bounds only each attempt).
_S3_CALLS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="s3-call")
T = TypeVar("T")


def _within_deadline(s3: S3Settings, action: str, error: type[WorkerError], call: Callable[[], T]) -> T:
    future = _S3_CALLS.submit(call)
    try:
        return future.result(timeout=s3.timeout_s)
    except FuturesTimeout:
        where = s3.endpoint_url or "AWS S3"
        raise error(
            f"{action}: {where} did not answer within {s3.timeout_s:g} s (S3_TIMEOUT_SECONDS); check "
            "BUCKET_ENDPOINT_URL and the store's health"
        ) from None


def _explain(exc: Exception, action: str, s3: S3Settings) -> str:
    """A caller-facing reason that names the variables to check and never their values."""
    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        exc = exc.__context__  # multipart uploads wrap the ClientError that explains the failure
    where = s3.endpoint_url or "AWS S3"
    if isinstance(exc, EndpointConnectionError):
        return f"{action}: S3 endpoint {where} is unreachable (check BUCKET_ENDPOINT_URL)"
    if isinstance(exc, NoCredentialsError):
        return f"{action}: no S3 credentials (set BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY)"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"PreconditionFailed", "412"}:
            return f"{action}: the object already exists (outputs never replace one; S3_ALLOW_OVERWRITE=1 allows it)"
        if code in _ACCESS_DENIED:
            return (
                f"{action}: S3 refused the credentials ({code}); check BUCKET_ACCESS_KEY_ID and "
                "BUCKET_SECRET_ACCESS_KEY and the bucket's permissions"
            )
        if code in {"NoSuchBucket", "404"}:
            return f"{action}: the bucket does not exist at {where}"
        return f"{action}: S3 answered {code or 'an error'}"
    return f"{action}: S3 request failed ({type(exc).__name__})"


def open_s3_object(s3: S3Settings, bucket: str, key: str, field: str, max_bytes: int) -> bytes:
    """Read an input object, refusing one over the cap before downloading it."""
    client = _client(s3)
    action = f"{field}: reading s3://{bucket}/{key}"

    def read() -> bytes:
        head = client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] > max_bytes:
            size = head["ContentLength"]
            raise InputError(f"{field}: s3://{bucket}/{key} is {size} bytes, over the {max_bytes}-byte cap")
        return client.get_object(Bucket=bucket, Key=key)["Body"].read(max_bytes + 1)

    try:
        return _within_deadline(s3, action, InputError, read)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in {"404", "NoSuchKey"} and _bucket_exists(client, bucket):
            raise InputError(f"{field}: s3://{bucket}/{key} does not exist") from None
        raise InputError(_explain(exc, action, s3)) from None
    except BotoCoreError as exc:
        raise InputError(_explain(exc, action, s3)) from None


def _refuse_existing(client: Any, bucket: str, key: str) -> None:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in {"404", "NoSuchKey", "NotFound"}:
            return
        raise
    raise StorageError(
        f"s3://{bucket}/{key} already exists; outputs never replace an object (S3_ALLOW_OVERWRITE=1 allows it)"
    )


def _bucket_exists(client: Any, bucket: str) -> bool:
    """A HEAD answers 404 for a missing key and a missing bucket alike: ask about the bucket itself."""
    try:
        client.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError):
        return False
    return True


class DestinationKind(StrEnum):
    S3 = "s3"
    LOCAL = "local"  # no bucket configured: OUTPUT_DIR
    INLINE = "inline"  # base64 in the result


@dataclass(frozen=True)
class Destination:
    """Where a job's outputs go, decided before generation so a bad destination fails fast."""

    kind: DestinationKind
    bucket: str | None = None
    key: str | None = None  # exact key, one output
    prefix: str | None = None


def check_s3_bucket(s3: S3Settings, bucket: str, field: str) -> None:
    """The operator's trust boundary: requests reach only the buckets allowed (default: BUCKET_NAME)."""
    allowed = s3.buckets_allowed()
    if bucket not in allowed:
        names = ", ".join(allowed) or "none"
        raise InputError(
            f"{field}: bucket {bucket!r} is not allowed on this endpoint (allowed: {names}; S3_ALLOWED_BUCKETS)"
        )


def check_s3_key(s3: S3Settings, key: str, field: str, is_prefix: bool = False) -> None:
    """With S3_REQUIRED_PREFIX, every key a request names stays under it: an object's key strictly inside it,
    a prefix (`is_prefix`) inside it or equal to it (the keys written under it are inside)."""
    required = (s3.required_prefix or "").strip("/")
    if not required or (is_prefix and key.strip("/") == required):
        return
    if not key.startswith(f"{required}/") or not key.removeprefix(f"{required}/").strip("/"):
        raise InputError(
            f"{field}: keys must start with {required}/ on this endpoint and name something inside it "
            f"(S3_REQUIRED_PREFIX={required!r}); got {key!r}"
        )


def choose_destination(
    s3: S3Settings, bucket: str | None, key: str | None, prefix: str | None, inline: bool
) -> Destination:
    if inline:
        return Destination(DestinationKind.INLINE)
    if bucket:
        check_s3_bucket(s3, bucket, "s3_bucket")
    bucket = bucket or s3.bucket
    if bucket:
        if key:
            check_s3_key(s3, key, "s3_key")
        elif prefix:
            check_s3_key(s3, prefix, "s3_prefix", is_prefix=True)
        return Destination(DestinationKind.S3, bucket=bucket, key=key, prefix=prefix or s3.key_prefix)
    if key or prefix:
        raise InputError("s3_key/s3_prefix: no bucket configured; set BUCKET_NAME or give s3_bucket")
    return Destination(DestinationKind.LOCAL)


def safe_job_id(job_id: str) -> str:
    """The job id as a file-name part: only letters, digits, '.', '_' and '-', never a leading dot."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", job_id).lstrip(".") or "job"


def object_key(destination: Destination, worker: str, job_id: str, index: int, extension: str) -> str:
    if destination.key:
        return destination.key
    prefix = f"{destination.prefix}/" if destination.prefix else ""
    return f"{prefix}{worker}/{safe_job_id(job_id)}-{index}.{extension}"


def check_key_length(destination: Destination, worker: str, job_id: str, outputs: int) -> None:
    """Before generating: the longest key this job writes must fit S3's 1024 bytes."""
    if destination.kind is not DestinationKind.S3 or destination.key:
        return
    longest = max(len(info.extension) for info in AUDIO_FORMATS.values())
    key = object_key(destination, worker, job_id, max(outputs - 1, 0), "x" * max(longest, len("latents.f32")))
    if len(key.encode()) > 1024:
        raise InputError(
            f"s3_prefix: with {worker}/<job id>-<n>.<ext> appended the keys would be {len(key.encode())} bytes; "
            "S3 allows 1024: shorten s3_prefix"
        )


def attachment_key(destination: Destination, worker: str, job_id: str, name: str, extension: str) -> str:
    """Beside the audio: <the exact key without extension>-<name>, or <prefix>/<worker>/<job id>-<name>."""
    if destination.key:
        # Only the last path component's extension: a '.' in a folder name (team.a/song) must not cut the key
        # there, which would move the attachment out of the folder, and out of S3_REQUIRED_PREFIX.
        return f"{posixpath.splitext(destination.key)[0]}-{name}.{extension}"
    prefix = f"{destination.prefix}/" if destination.prefix else ""
    return f"{prefix}{worker}/{safe_job_id(job_id)}-{name}.{extension}"


def store(
    destination: Destination, outputs: list[bytes], audio_format: str, worker: str, job_id: str, settings: Settings
) -> list[dict[str, str]]:
    """Write every encoded output where `destination` says; one location per output, in order."""
    if destination.kind is DestinationKind.INLINE:
        return inline(outputs, settings.inline_max_bytes)
    info = AUDIO_FORMATS[audio_format]
    locations = []
    for index, data in enumerate(outputs):
        key = object_key(destination, worker, job_id, index, info.extension)
        if destination.kind is DestinationKind.S3:
            locations.append(upload(settings.s3, destination.bucket, key, data, info.content_type))
        else:
            locations.append(write_local(settings.output_dir, key, data))
    return locations


def upload(s3: S3Settings, bucket: str, key: str, data: bytes, content_type: str) -> dict[str, str]:
    """Upload (multipart above 16 MiB) and return the s3:// URI and a presigned https URL."""
    client = _client(s3)
    action = f"upload to s3://{bucket}/{key}"

    def send() -> str:
        if s3.allow_overwrite:
            client.upload_fileobj(
                io.BytesIO(data), bucket, key, ExtraArgs={"ContentType": content_type}, Config=_TRANSFER
            )
        else:
            # HEAD first: a cheap refusal before sending any part (and the only one on a store that ignores the
            # condition); the conditional write then closes the window between the check and the write.
            _refuse_existing(client, bucket, key)
            _write_new(client, bucket, key, data, content_type)
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=s3.presign_expiry_s
        )

    try:
        url = _within_deadline(s3, action, StorageError, send)
    except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
        raise StorageError(_explain(exc, action, s3)) from None
    return {"s3_uri": f"s3://{bucket}/{key}", "url": url}


def _write_new(client: Any, bucket: str, key: str, data: bytes, content_type: str) -> None:
    """Create the object only if none exists, atomically: `If-None-Match: *` on the one PUT, or on the
    CompleteMultipartUpload that makes a multipart object appear (s3transfer cannot pass the condition)."""
    part_bytes = _TRANSFER.multipart_chunksize
    if len(data) < _TRANSFER.multipart_threshold:
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*")
        return
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)["UploadId"]

    def send_part(number: int) -> dict[str, Any]:
        part = data[(number - 1) * part_bytes : number * part_bytes]
        answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part)
        return {"ETag": answer["ETag"], "PartNumber": number}

    try:
        with ThreadPoolExecutor(max_workers=_TRANSFER.max_request_concurrency) as parts_pool:
            parts = list(parts_pool.map(send_part, range(1, math.ceil(len(data) / part_bytes) + 1)))
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
        )
    except BaseException:
        with contextlib.suppress(BotoCoreError, ClientError):  # the failure that matters is the one above
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)  # stored parts are billed
        raise


def write_local(output_dir: Path, key: str, data: bytes) -> dict[str, str]:
    """Write under OUTPUT_DIR; the result names the file relative to it (the server's paths stay its own)."""
    root = output_dir.resolve()
    path = (root / key).resolve()
    if not path.is_relative_to(root):
        raise StorageError(f"output key {key!r} leaves OUTPUT_DIR")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise StorageError(
            f"writing {key} under OUTPUT_DIR failed: {exc.strerror} (set OUTPUT_DIR or configure S3)"
        ) from None
    return {"path": key}


def inline(outputs: list[bytes], max_bytes: int) -> list[dict[str, str]]:
    """Base64 in the result itself, capped in total: RunPod silently drops results over its payload limit."""
    total = sum(len(data) for data in outputs)
    if total > max_bytes:
        raise StorageError(
            f"return_base64: output is {total} bytes, over the {max_bytes}-byte inline cap "
            "; configure S3 (BUCKET_NAME, BUCKET_ENDPOINT_URL, "
            "BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY) or ask for a shorter or compressed output"
        )
    return [{"base64": base64.b64encode(data).decode("ascii")} for data in outputs]
