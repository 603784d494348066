"""The one audio type, and its encoding to and decoding from the formats libsndfile handles."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr

from shared.errors import InputError
from shared.formats import AUDIO_FORMATS
from shared.settings import Mp3Settings

# Opus only runs at these rates; anything else is resampled to 48 kHz before encoding.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# MPEG layer III (MPEG-1, -2 and -2.5) rates; others go to the nearest standard rate above.
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


@dataclass(frozen=True)
class Audio:
    """Float32 samples shaped (frames, channels) at a sample rate."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 2:
            raise ValueError(f"audio samples must be (frames, channels), got shape {self.samples.shape}")

    @property
    def frames(self) -> int:
        return self.samples.shape[0]

    @property
    def channels(self) -> int:
        return self.samples.shape[1]

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def resampled(self, sample_rate: int) -> Audio:
        if sample_rate == self.sample_rate:
            return self
        converted = soxr.resample(self.samples, self.sample_rate, sample_rate, quality="HQ")
        return Audio(np.ascontiguousarray(converted, dtype=np.float32), sample_rate)

    def with_channels(self, channels: int) -> Audio:
        """Down-mix to mono by averaging, or up-mix mono by copying; other changes are refused."""
        if channels == self.channels:
            return self
        if channels == 1:
            return Audio(self.samples.mean(axis=1, keepdims=True), self.sample_rate)
        if self.channels == 1:
            return Audio(np.repeat(self.samples, channels, axis=1), self.sample_rate)
        raise ValueError(f"cannot convert {self.channels} channels to {channels}")


def _nearest_rate_at_or_above(rate: int, allowed: tuple[int, ...]) -> int:
    return next((candidate for candidate in allowed if candidate >= rate), allowed[-1])


def encode(audio: Audio, audio_format: str, mp3: Mp3Settings | None = None) -> tuple[bytes, int]:
    """Encode to a container; returns the bytes and the sample rate actually written."""
    info = AUDIO_FORMATS[audio_format]
    options = {}
    if audio_format == "opus":
        audio = audio.resampled(_nearest_rate_at_or_above(audio.sample_rate, _OPUS_RATES))
    elif audio_format == "mp3":
        audio = audio.resampled(_nearest_rate_at_or_above(audio.sample_rate, _MP3_RATES))
        mp3 = mp3 or Mp3Settings.model_construct()  # libsndfile's defaults, not the environment's
        options = {"bitrate_mode": mp3.bitrate_mode.upper(), "compression_level": mp3.compression_level}
    buffer = io.BytesIO()
    samples = np.clip(audio.samples, -1.0, 1.0)
    soundfile.write(buffer, samples, audio.sample_rate, format=info.container, subtype=info.subtype, **options)
    return buffer.getvalue(), audio.sample_rate


def pcm_s16le(audio: Audio) -> bytes:
    """Raw little-endian 16-bit PCM, channels interleaved: the lossless, header-free stream format.

    Quantized as libsndfile writes a WAV's PCM_16 (with clipping: round at 32-bit scale, keep the top 16
    bits), so a streamed job's samples equal its uploaded WAV's exactly, the values just below a step too.
    """
    scaled = np.rint(np.clip(audio.samples, -1.0, 1.0).astype(np.float64) * 2.0**31)
    top = np.right_shift(np.clip(scaled, -(2**31), 2**31 - 1).astype(np.int64), 16)
    return np.where(scaled >= 2**31 - 1, 32767, top).astype("<i2").tobytes()


def container_of(data: bytes) -> str | None:
    """The container libsndfile sees in these bytes ("WAV", "MP3", "FLAC", "OGG", ...), None if none."""
    try:
        return soundfile.info(io.BytesIO(data)).format
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        return None


def decode(data: bytes, source_name: str, max_seconds: float | None = None) -> Audio:
    """Decode any container libsndfile reads (WAV, FLAC, MP3, OGG/Vorbis/Opus, AIFF...).

    With `max_seconds`, the length is checked from the header first: a few MiB of low-rate audio can
    hold hours, which would cost gigabytes once decoded and resampled.
    """
    if max_seconds is not None:
        try:
            info = soundfile.info(io.BytesIO(data))
        except (soundfile.LibsndfileError, RuntimeError, TypeError):
            info = None  # not readable: the decode below says why
        if info is not None and info.samplerate and info.frames / info.samplerate > max_seconds:
            seconds = info.frames / info.samplerate
            raise InputError(f"{source_name}: audio is {seconds:.1f} s long, over this worker's {max_seconds:g} s cap")
    try:
        samples, sample_rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        reason = str(exc).rsplit(": ", 1)[-1]  # libsndfile names the in-memory file by its repr: keep the reason
        raise InputError(f"{source_name}: audio does not decode ({reason})") from None
    if samples.shape[0] == 0:
        raise InputError(f"{source_name}: audio is empty")
    return Audio(samples, int(sample_rate))
