"""The one table of output audio formats: what a request may ask for and how each is written and served."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AudioFormatInfo:
    content_type: str  # served with the uploaded object
    extension: str  # of the object key / local file
    container: str  # libsndfile's major format (also what `soundfile.info` reports when decoding)
    subtype: str  # libsndfile's encoding inside the container


AudioFormat = Literal["wav", "flac", "mp3", "ogg", "opus"]
AUDIO_FORMATS: dict[str, AudioFormatInfo] = {
    "wav": AudioFormatInfo("audio/wav", "wav", "WAV", "PCM_16"),
    "flac": AudioFormatInfo("audio/flac", "flac", "FLAC", "PCM_16"),
    "mp3": AudioFormatInfo("audio/mpeg", "mp3", "MP3", "MPEG_LAYER_III"),
    "ogg": AudioFormatInfo("audio/ogg", "ogg", "OGG", "VORBIS"),
    "opus": AudioFormatInfo("audio/ogg", "opus", "OGG", "OPUS"),  # Opus in an Ogg container
}
