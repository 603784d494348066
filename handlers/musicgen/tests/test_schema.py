"""MusicGen requests: what is refused, and how the error reads (pure: no model)."""

import pytest

from handlers.musicgen.schema import MusicGenRequest
from shared.schemas import parse_request
from shared.testing import refusal

pytestmark = pytest.mark.unit

CAP = 20 * 1024 * 1024
BAD_INPUTS = [
    ({"prompt": "x", "colour": "blue"}, ["colour: unknown field", "allowed fields:"]),
    ({"prompt": "x", "duration": "ten"}, ["duration: Input should be a valid number"]),
    ({"prompt": "x", "duration": 900}, ["duration: Input should be less than or equal to 300"]),
    ({"prompt": "x", "duration": 0.1}, ["duration: Input should be greater than or equal to 0.5"]),
    ({"prompt": "   "}, ["prompt", "at least 1 character"]),
    ({"prompt": []}, ["prompt", "at least 1 item"]),
    ({}, ["prompt: field required"]),
    ({"prompt": "x", "format": "aiff"}, ["format: Input should be 'wav', 'flac', 'mp3', 'ogg' or 'opus'"]),
    ({"prompt": "x", "top_k": True}, ["top_k: Input should be a valid integer"]),
    ({"prompt": "x", "melody_audio": "A" * 30_000_000}, ["melody_audio", "over the 20971520-byte cap"]),
    ({"prompt": "x", "s3_key": "../escape.wav"}, ["s3_key", "'..'"]),
    ({"prompt": "x", "s3_key": "/abs.wav"}, ["s3_key", "no leading '/'"]),
    ({"prompt": "x", "s3_key": "a.flac"}, ["s3_key ends in .flac but format is 'wav'"]),
    ({"prompt": ["a", "b"], "s3_key": "one.wav"}, ["s3_key: this job makes 2 outputs"]),
    ({"prompt": "x", "s3_bucket": "Bad_Bucket!"}, ["s3_bucket", "valid S3 bucket name"]),
    ({"prompt": "x", "return_base64": True, "s3_key": "k.wav"}, ["return_base64 and s3_bucket/s3_key/s3_prefix"]),
]


@pytest.mark.parametrize(("job_input", "expected"), BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_is_a_clear_error(job_input, expected):
    error = refusal(MusicGenRequest, job_input, CAP)
    assert all(fragment in error for fragment in expected), error


def test_a_prompt_list_is_one_output_each():
    assert parse_request(MusicGenRequest, {"prompt": ["a", "b", "c"]}, CAP).output_count() == 3
