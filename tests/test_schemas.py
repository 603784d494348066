"""Request validation: pure, no model, no torch work."""

import base64

import pytest

from handlers.musicgen.schema import MusicGenRequest
from shared.errors import InputError
from shared.schemas import AudioLabel, decode_base64_audio, parse_request

pytestmark = pytest.mark.unit

CAP = 1000


def error_for(raw) -> str:
    with pytest.raises(InputError) as caught:
        parse_request(MusicGenRequest, raw, CAP)
    return str(caught.value)


def test_defaults_are_declared_once():
    request = parse_request(MusicGenRequest, {"prompt": "  piano  "}, CAP)
    assert request.prompt == ["piano"] and request.duration == 8.0 and request.format == "wav"
    assert request.seed is None
    assert all(field.description for field in MusicGenRequest.model_fields.values())


def test_input_must_be_an_object():
    assert error_for("a string") == "input: must be a JSON object"
    assert error_for(None) == "input: must be a JSON object"


def test_every_bad_field_is_reported_in_one_message():
    message = error_for({"prompt": "", "duration": -1, "seed": -5, "extra": 1})
    assert "prompt.0: String should have at least 1 character" in message
    assert "duration: Input should be greater than or equal to 0.5 (got -1)" in message
    assert "seed: Input should be greater than or equal to 0" in message
    assert "extra: unknown field" in message and "allowed fields: format, s3_bucket" in message


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"prompt": "x", "duration": "5"}, "duration: Input should be a valid number"),
        ({"prompt": "x", "seed": True}, "seed: Input should be a valid integer"),
        ({"prompt": "x", "top_p": 1.5}, "top_p: Input should be less than or equal to 1"),
        ({"prompt": "x", "temperature": 0}, "temperature: Input should be greater than 0"),
        ({"prompt": ["a"] * 9}, "at most 8 items"),
        ({"prompt": "x", "s3_key": "a//b.wav"}, "s3_key: must not contain empty, '.' or '..' path segments"),
        ({"prompt": "x", "s3_key": "a\\b.wav"}, "s3_key: must be a relative key"),
        ({"prompt": "x", "s3_key": "a\nb.wav"}, "s3_key: must not contain control characters"),
        ({"prompt": "x", "s3_key": "k" * 1025}, "s3_key: must be 1 to 1024 bytes"),
        ({"prompt": "x", "s3_prefix": "../up"}, "s3_prefix"),
        ({"prompt": "x", "s3_key": "a.wav", "s3_prefix": "p"}, "s3_key and s3_prefix: give one or the other"),
        ({"prompt": "x", "melody_audio": "ftp://host/a.wav"}, "must be an https:// URL, an s3:// URI or base64"),
        ({"prompt": "x", "melody_audio": "s3://Bad_Bucket/a.wav"}, "melody_audio: must be a valid S3 bucket name"),
        ({"prompt": "x", "melody_audio": "QUJD" * 400}, "over the 1000-byte cap"),
    ],
)
def test_rules(raw, fragment):
    assert fragment in error_for(raw)


def test_matching_key_extension_and_batch_prefix_are_accepted():
    assert parse_request(MusicGenRequest, {"prompt": "x", "format": "mp3", "s3_key": "a/b.mp3"}, CAP).s3_key
    assert parse_request(MusicGenRequest, {"prompt": ["a", "b"], "s3_prefix": "runs/"}, CAP).output_count() == 2


def test_base64_variants_decode():
    data = bytes(range(256))
    standard = base64.b64encode(data).decode()
    assert decode_base64_audio(standard) == data
    assert decode_base64_audio("data:audio/wav;base64," + standard) == data
    assert decode_base64_audio(base64.urlsafe_b64encode(data).decode().rstrip("=")) == data


def test_input_audio_labels_are_typed():
    request = parse_request(MusicGenRequest, {"prompt": "x", "melody_audio": "QUJDRA=="}, CAP)
    assert request.input_audio() == {AudioLabel("melody_audio"): "QUJDRA=="}
    assert str(AudioLabel("ref_audio", 1)) == "ref_audio.1" and str(AudioLabel("audio")) == "audio"
