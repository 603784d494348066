"""Encoding every output format and decoding it back."""

import io

import numpy as np
import pytest
import soundfile

from shared.audio import Audio, container_of, decode, encode, pcm_s16le
from shared.errors import InputError
from shared.formats import AUDIO_FORMATS

pytestmark = pytest.mark.unit


def tone(seconds: float, rate: int, channels: int) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * 440 * t, dtype=np.float64).astype(np.float32)
    return Audio(np.repeat(wave[:, None], channels, axis=1), rate)


@pytest.mark.parametrize("audio_format", list(AUDIO_FORMATS))
@pytest.mark.parametrize(("rate", "channels"), [(32000, 1), (48000, 2), (24000, 1)])
def test_every_format_decodes_back_to_the_same_duration(audio_format, rate, channels):
    source = tone(1.25, rate, channels)
    data, written_rate = encode(source, audio_format)
    assert container_of(data) == AUDIO_FORMATS[audio_format].container  # the table says what is written
    back = decode(data, "output")
    assert back.sample_rate == written_rate
    assert back.channels == channels
    # Lossy codecs pad by a few milliseconds at most.
    assert back.duration == pytest.approx(1.25, abs=0.03)
    if audio_format in ("wav", "flac"):
        assert np.allclose(back.samples, source.samples, atol=1e-4)


def test_opus_is_written_at_a_rate_it_supports():
    _, rate = encode(tone(0.5, 32000, 1), "opus")
    assert rate == 48000


def test_resample_and_channel_conversion():
    stereo = tone(1.0, 44100, 2)
    mono = stereo.resampled(32000).with_channels(1)
    assert mono.sample_rate == 32000 and mono.channels == 1 and mono.frames == 32000
    assert tone(0.1, 16000, 1).with_channels(2).channels == 2


def test_garbage_and_empty_audio_are_input_errors():
    with pytest.raises(InputError, match="melody_audio: audio does not decode"):
        decode(b"definitely not audio", "melody_audio")
    data, _ = encode(Audio(np.zeros((0, 1), np.float32), 16000), "wav")
    with pytest.raises(InputError, match="melody_audio: audio is empty"):
        decode(data, "melody_audio")


def test_streamed_pcm_equals_the_wav_libsndfile_writes_even_just_below_a_step():
    rng = np.random.default_rng(1)
    below_steps = [np.nextafter(np.float32(k / 32768), np.float32(-1)) for k in range(-64, 64)]
    samples = np.concatenate([rng.uniform(-1.2, 1.2, 5000), below_steps, [1.0, -1.0]]).astype(np.float32)
    audio = Audio(samples.reshape(-1, 1), 16000)
    written = soundfile.read(io.BytesIO(encode(audio, "wav")[0]), dtype="int16")[0]
    assert np.array_equal(np.frombuffer(pcm_s16le(audio), "<i2"), written)
