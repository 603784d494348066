"""Output and attachment keys under S3_REQUIRED_PREFIX (issue 26, item 6); no S3 server needed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared import storage
from shared.errors import InputError
from shared.fetch import fetch_audio_bytes
from shared.settings import S3Settings, Settings

pytestmark = pytest.mark.unit

FENCED = S3Settings(bucket="audio-results", required_prefix="team.a", key_prefix="team.a/outputs")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("team.a/song", "team.a/song-latents.f32"),  # a '.' in a folder name is no extension
        ("team.a/song.wav", "team.a/song-latents.f32"),
        ("team.a/v1.2/take.final.flac", "team.a/v1.2/take.final-latents.f32"),
    ],
)
def test_an_attachment_stays_beside_its_audio_inside_the_required_prefix(key, expected):
    destination = storage.choose_destination(FENCED, None, key, None, False)
    attachment = storage.attachment_key(destination, "voxcpm", "job-1", "latents", "f32")
    assert attachment == expected
    storage.check_s3_key(FENCED, attachment, "s3_key")


@pytest.mark.parametrize("key", ["team.a", "team.a/", "team.ab/song.wav", "team/song.wav"])
def test_an_output_key_not_strictly_inside_the_required_prefix_is_refused(key):
    with pytest.raises(InputError) as caught:
        storage.choose_destination(FENCED, None, key, None, False)
    assert str(caught.value) == (
        "s3_key: keys must start with team.a/ on this endpoint and name something inside it "
        f"(S3_REQUIRED_PREFIX='team.a'); got {key!r}"
    )


def test_an_input_key_equal_to_the_required_prefix_is_refused():
    with pytest.raises(InputError, match=r"^voice: keys must start with team.a/ .*\(S3_REQUIRED_PREFIX='team.a'\)"):
        fetch_audio_bytes("s3://audio-results/team.a", "voice", Settings(s3=FENCED))


@pytest.mark.parametrize("prefix", ["team.a", "team.a/", "team.a/takes"])
def test_a_prefix_may_be_the_required_prefix_itself(prefix):
    destination = storage.choose_destination(FENCED, None, None, prefix, False)
    key = storage.object_key(destination, "voxcpm", "job-1", 0, "wav")
    storage.check_s3_key(FENCED, key, "s3_key")


def test_the_default_prefix_sits_inside_the_required_one_as_a_folder():
    with pytest.raises(ValidationError) as refused:
        S3Settings(bucket="audio-results", required_prefix="team.a", key_prefix="team.ab")
    assert (
        "environment variables S3_KEY_PREFIX ('team.ab') must be S3_REQUIRED_PREFIX ('team.a') or a folder inside "
        "it ('team.a/...')" in str(refused.value)
    )
    for inside in ("team.a", "team.a/outputs"):
        assert S3Settings(bucket="audio-results", required_prefix="team.a", key_prefix=inside).key_prefix == inside
