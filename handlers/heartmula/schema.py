"""The HeartMuLa request: every input once, with type, default, bounds and description (no torch here).

The fields are the reference deployment's (`lyrics`, `tags`, `max_duration_ms`, `temperature`, `topk`,
`cfg_scale`), with heartlib's defaults but the length: one minute unless asked.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from shared.schemas import JobRequest

SAMPLE_RATE = 48000  # stereo out
FRAME_MS = 80  # one frame of 8 codebooks per 80 ms: 12.5 frames/s
CONTEXT_POSITIONS = 8192  # the backbone's context: prompt and frames together
LONGEST_MS = CONTEXT_POSITIONS * FRAME_MS  # a song the context could hold with an empty prompt


class HeartMuLaRequest(JobRequest):
    lyrics: Annotated[str, StringConstraints(strip_whitespace=True, max_length=8000)] = Field(
        "", description="Lyrics with section tags ([Intro], [Verse], [Chorus], [Bridge]...); empty: instrumental."
    )
    tags: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = Field(
        "", description="Comma-separated style tags, e.g. 'piano,happy,wedding,synthesizer,romantic'."
    )
    max_duration_ms: int = Field(
        60_000,
        ge=FRAME_MS,
        le=LONGEST_MS,
        description="The longest song to generate, in ms (it may end sooner); capped by HEARTMULA_MAX_DURATION_MS.",
    )
    temperature: float = Field(1.0, gt=0.0, le=2.0, description="Sampling temperature of every codebook.")
    topk: int = Field(50, ge=1, le=8192, description="Sample among the k likeliest tokens of each codebook.")
    cfg_scale: float = Field(
        1.5, ge=1.0, le=10.0, description="Classifier-free guidance (1 = off; above 1 the batch doubles)."
    )

    @model_validator(mode="after")
    def _something_to_sing(self) -> HeartMuLaRequest:
        if not self.lyrics and not self.tags:
            raise ValueError("lyrics and tags: both are empty; give lyrics, tags or both")
        return self
