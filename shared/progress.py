"""What a running job tells the outside while it runs: progress updates, and (streaming workers) audio."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from typing import Any, Literal

from loguru import logger

from shared import audio as audio_codec
from shared.audio import Audio
from shared.settings import Mp3Settings

_PROGRESS_INTERVAL_S = 2.0
# Raw audio bytes per streamed item: 512 KiB is ~700 KB as base64, well under RunPod's 1 MB per chunk.
STREAM_CHUNK_BYTES = 512 * 1024
StreamFormat = Literal["pcm_s16le", "mp3"]


class Progress:
    """Stage and fraction done: to the log at every new stage and every 1% of a stage (a per-frame caller
    would flood it), and to RunPod when running there, at every new stage and at most every 2 s within one."""

    def __init__(self, job: dict[str, Any]) -> None:
        self._job = job
        self._on_runpod = bool(os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))
        self._last_sent = 0.0
        self._stage: str | None = None
        self._logged: float | None = None  # the fraction last logged in this stage

    def __call__(self, stage: str, fraction: float | None = None) -> None:
        new_stage = stage != self._stage
        update = {"stage": stage} if fraction is None else {"stage": stage, "progress": round(fraction, 3)}
        if new_stage or fraction is None or self._logged is None or fraction - self._logged >= 0.01 or fraction == 1:
            # Bound: a batch reports every job's progress from one thread.
            logger.bind(job_id=str(self._job.get("id") or "local")).info("progress: {}", update)
            self._stage, self._logged = stage, fraction
        now = time.monotonic()
        if self._on_runpod and (new_stage or now - self._last_sent >= _PROGRESS_INTERVAL_S):
            self._last_sent = now
            import runpod  # only on RunPod, where the SDK is loaded: one-shot runs never import it

            runpod.serverless.progress_update(self._job, update)


class AudioStream:
    """Audio of a job as it is produced, as items of a generator handler's stream.

    Raw PCM (`pcm_s16le`, exact) or self-contained MP3 pieces, each well under RunPod's 1 MB per item.
    """

    def __init__(self, emit: Callable[[dict[str, Any]], None], mp3: Mp3Settings) -> None:
        self._emit = emit
        self._mp3 = mp3
        self._chunks = 0

    def write(self, audio: Audio, stream_format: StreamFormat) -> None:
        step = max(1, STREAM_CHUNK_BYTES // (2 * audio.channels))  # frames per item at 16-bit PCM
        for start in range(0, audio.frames, step):
            piece = Audio(audio.samples[start : start + step], audio.sample_rate)
            if stream_format == "pcm_s16le":
                data, rate = audio_codec.pcm_s16le(piece), piece.sample_rate
            else:
                data, rate = audio_codec.encode(piece, "mp3", self._mp3)
            self._emit(
                {
                    "chunk": self._chunks,
                    "format": stream_format,
                    "sample_rate": rate,
                    "channels": piece.channels,
                    "frames": piece.frames,
                    "audio_base64": base64.b64encode(data).decode(),
                }
            )
            self._chunks += 1
