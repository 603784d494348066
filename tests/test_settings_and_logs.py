"""Environment settings and secret redaction."""

import numpy as np
import pytest
from loguru import logger

from shared.audio import Audio, encode
from shared.logs import configure_logging, redact
from shared.settings import Residency, Settings, SettingsError


def test_defaults_and_overrides():
    assert Settings.from_env({}).residency is None  # the handler's default applies
    settings = Settings.from_env(
        {
            "MODEL_RESIDENCY": "unload",
            "VOLUME_ROOT": "/vol",
            "BUCKET_NAME": "b",
            "S3_KEY_PREFIX": "/runs/",
            "INLINE_OUTPUT_MAX_BYTES": "1024",
        }
    )
    assert settings.residency is Residency.UNLOAD and str(settings.volume_root) == "/vol"
    assert settings.s3.bucket == "b" and settings.s3.key_prefix == "runs" and settings.inline_max_bytes == 1024


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_RESIDENCY": "sometimes"}, "MODEL_RESIDENCY must be one of keep, unload"),
        ({"PRESIGNED_URL_EXPIRY_SECONDS": "999999999"}, "between 1 and 604800"),
        ({"INLINE_OUTPUT_MAX_BYTES": "lots"}, "must be an integer"),
    ],
)
def test_bad_environment_is_named(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_secret_never_reaches_the_log(monkeypatch, capfd):
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


def test_mp3_settings_from_environment_change_the_encoding():
    settings = Settings.from_env({"MP3_BITRATE_MODE": "variable", "MP3_COMPRESSION_LEVEL": "0.9"})
    assert settings.mp3.bitrate_mode == "variable" and settings.mp3.compression_level == 0.9
    noise = Audio((np.random.default_rng(0).standard_normal((48_000, 1)) * 0.2).astype(np.float32), 48_000)
    small, _ = encode(noise, "mp3", settings.mp3)
    large, _ = encode(noise, "mp3", Settings.from_env({"MP3_COMPRESSION_LEVEL": "0"}).mp3)
    assert len(small) < len(large) / 2
    with pytest.raises(SettingsError, match="MP3_COMPRESSION_LEVEL must be a number from 0 to 0.99, got 1.0"):
        Settings.from_env({"MP3_COMPRESSION_LEVEL": "1"})


def test_locked_parameters_are_a_json_object():
    assert Settings.from_env({"LOCKED_PARAMETERS": '{"steps": 50}'}).locked_parameters == {"steps": 50}
    with pytest.raises(SettingsError, match="LOCKED_PARAMETERS must be a JSON object, got list"):
        Settings.from_env({"LOCKED_PARAMETERS": "[1]"})
    with pytest.raises(SettingsError, match="MODEL_RESIDENCY must be one of keep, unload, offload"):
        Settings.from_env({"MODEL_RESIDENCY": "sometimes"})
