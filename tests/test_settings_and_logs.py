"""Environment settings (shared and every worker's own) and secret redaction."""

import sys

import numpy as np
import pytest
from loguru import logger

from shared import workers
from shared.audio import Audio, encode
from shared.errors import SettingsError
from shared.logs import configure_logging, redact
from shared.settings import Mp3Settings, Residency, Settings, read_settings, variables

pytestmark = pytest.mark.unit


@pytest.fixture
def env(monkeypatch):
    """Set variables for one test, starting from none of the worker's."""
    for name in variables(Settings) + variables(Mp3Settings) + ["BUCKET_NAME", "S3_KEY_PREFIX"]:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def test_defaults_and_overrides(env):
    assert read_settings(Settings).residency is None  # the worker's default applies
    env(MODEL_RESIDENCY="UNLOAD", VOLUME_ROOT="/vol", BUCKET_NAME="b", S3_KEY_PREFIX="/runs/")
    env(INLINE_OUTPUT_MAX_BYTES="1024", INPUT_AUDIO_ALLOW_PRIVATE_URLS="yes", MODEL_ID="")
    settings = read_settings(Settings)
    assert settings.residency is Residency.UNLOAD and str(settings.volume_root) == "/vol"
    assert settings.s3.bucket == "b" and settings.s3.key_prefix == "runs" and settings.inline_max_bytes == 1024
    assert settings.allow_private_urls is True and settings.model_id is None  # empty means unset


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"MODEL_RESIDENCY": "sometimes"}, "environment variable MODEL_RESIDENCY: Input should be 'keep', 'unload'"),
        ({"PRESIGNED_URL_EXPIRY_SECONDS": "999999999"}, "PRESIGNED_URL_EXPIRY_SECONDS: Input should be less than or"),
        ({"INLINE_OUTPUT_MAX_BYTES": "lots"}, "INLINE_OUTPUT_MAX_BYTES: Input should be a valid integer"),
        (
            {"INPUT_AUDIO_ALLOW_PRIVATE_URLS": "maybe"},
            "INPUT_AUDIO_ALLOW_PRIVATE_URLS: Input should be a valid boolean",
        ),
        ({"DEVICE": "tpu"}, "environment variable DEVICE: Input should be 'auto', 'cuda' or 'cpu' (got 'tpu')"),
        ({"LOCKED_PARAMETERS": "[1]"}, "LOCKED_PARAMETERS: must be a JSON object, got list"),
        ({"LOCKED_PARAMETERS": "{steps: 3}"}, "LOCKED_PARAMETERS: must be a JSON object: Expecting property name"),
    ],
)
def test_bad_environment_is_named(env, values, message):
    env(**values)
    with pytest.raises(SettingsError) as caught:
        read_settings(Settings)
    assert message in str(caught.value)


def test_every_bad_variable_is_named_at_once(env):
    env(DEVICE="tpu", MODEL_DTYPE="int8")
    with pytest.raises(SettingsError, match="DEVICE: .*; environment variable MODEL_DTYPE: "):
        read_settings(Settings)


@pytest.mark.parametrize("worker", workers.worker_names())
def test_each_worker_declares_its_variables_with_a_prefix_and_a_default(worker):
    config_class = workers.config_class(worker)
    prefix = worker.upper() + "_"
    for name in variables(config_class):
        assert name.startswith(prefix), f"{name} should start with {prefix}"
    read_settings(config_class)  # the defaults are valid


@pytest.fixture
def restore_logging(monkeypatch):
    """After a test that configures the worker's logging (in its body, where the captured stream is the
    test's): the streams are pytest's again, and loguru writes to whatever sys.stderr is then, never to this
    test's captured stream, which closes (later tests' log lines failed on it)."""
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    yield
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message))


def test_secret_never_reaches_the_log(monkeypatch, capfd, restore_logging):
    monkeypatch.setenv("BUCKET_SECRET_ACCESS_KEY", "sup3r-s3cret-value")
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    configure_logging()
    url = "https://s3/x.wav?X-Amz-Credential=AKIA1%2Fscope&X-Amz-Signature=deadbeef&X-Amz-Expires=60"
    try:
        raise RuntimeError("boom with sup3r-s3cret-value inside")
    except RuntimeError:
        logger.exception("failed using hf_abcdefghijklmnop and {}", url)
    err = capfd.readouterr().err
    assert "sup3r-s3cret-value" not in err and "hf_abcdefghijklmnop" not in err and "deadbeef" not in err
    assert "X-Amz-Signature=***" in err and "boom with *** inside" in err and "X-Amz-Expires=60" in err
    assert redact("plain text") == "plain text"
    assert "sup3r" not in repr(read_settings(Settings).s3)


def test_mp3_settings_from_environment_change_the_encoding(env):
    env(MP3_BITRATE_MODE="variable", MP3_COMPRESSION_LEVEL="0.9")
    settings = read_settings(Settings)
    assert settings.mp3.bitrate_mode == "variable" and settings.mp3.compression_level == 0.9
    noise = Audio((np.random.default_rng(0).standard_normal((48_000, 1)) * 0.2).astype(np.float32), 48_000)
    small, _ = encode(noise, "mp3", settings.mp3)
    large, _ = encode(noise, "mp3", Mp3Settings(compression_level=0.0))
    assert len(small) < len(large) / 2
    env(MP3_COMPRESSION_LEVEL="1")
    with pytest.raises(SettingsError, match="MP3_COMPRESSION_LEVEL: Input should be less than or equal to 0.99"):
        read_settings(Settings)


def test_locked_parameters_are_a_json_object(env):
    env(LOCKED_PARAMETERS='{"steps": 50}')
    assert read_settings(Settings).locked_parameters == {"steps": 50}
