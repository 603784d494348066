"""The ACE-Step 1.5 request: every input once, with type, default, bounds and description (no torch here)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from shared.schemas import AudioSource, JobRequest

SAMPLE_RATE = 48000  # stereo in and out
Task = Literal["text2music", "lego", "repaint", "cover", "extract", "complete"]
# The instrument classes ACE-Step 1.5's `complete` task names in its instruction ("Complete the input track
# with DRUMS | BASS:").
TrackClass = Literal[
    "vocals", "backing_vocals", "drums", "bass", "guitar", "keyboard", "percussion", "strings", "synth", "fx",
    "brass", "woodwinds",
]  # fmt: skip
# The reference plan's captions for each lego track; a request's caption replaces them.
TRACK_CAPTIONS = {
    "vocals": "soulful indie vocalist, warm, wordless melody, expressive",
    "backing_vocals": "background vocals, close harmony, wordless, warm",
    "drums": "live acoustic drum kit, tight kick and snare, brushed hi-hats",
}
_KEY_SCALE = re.compile(r"^[A-G](#|b)? (major|minor)$")
_NEEDS_SOURCE = {"lego", "repaint", "cover", "extract", "complete"}
Caption = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class AceStepRequest(JobRequest):
    task: Task = Field(
        "text2music",
        description="text2music, lego (a track over a source stem), repaint, cover, extract or complete (the "
        "source track completed with more instruments).",
    )
    caption: Caption | None = Field(None, description="Style tags/caption; lego defaults to the track type's caption.")
    lyrics: Annotated[str, StringConstraints(max_length=4096)] = Field(
        "", description="Lyrics, with [verse]/[chorus] tags; empty for instrumental."
    )
    audio: AudioSource | None = Field(
        None,
        description="Source audio for lego/repaint/cover/extract/complete (WAV/MP3/FLAC: base64, https or s3://).",
    )
    track_type: Literal["vocals", "backing_vocals", "drums"] | None = Field(
        None, description="The track lego generates (or extract pulls out)."
    )
    complete_with: list[TrackClass] | None = Field(
        None, min_length=1, max_length=12, description="complete: the instruments to add (omitted: the model picks)."
    )
    bpm: int | None = Field(None, ge=30, le=300, description="Tempo in beats per minute (required for lego).")
    key_scale: Annotated[str, StringConstraints(pattern=_KEY_SCALE.pattern)] | None = Field(
        None, description="Key, e.g. 'F# minor' or 'C major'."
    )
    audio_duration: float | None = Field(
        None, ge=1.0, le=600.0, description="Seconds; omitted: the source's length, or 30 s for text2music."
    )
    batch_size: int = Field(1, ge=1, le=2, description="Candidates to generate; each one is uploaded.")
    repainting_start: float | None = Field(None, ge=0.0, description="Start (s) of the section to regenerate.")
    repainting_end: float | None = Field(None, gt=0.0, description="End (s) of the section to regenerate.")
    steps: int | None = Field(
        None, ge=1, le=200, description="Diffusion steps; omitted: the checkpoint's (8 for turbo, 50 for base/sft)."
    )
    guidance_scale: float | None = Field(
        None,
        ge=1.0,
        le=20.0,
        description="Classifier-free guidance (1 = off); omitted: 7 for base/sft, off for turbo (guidance-distilled).",
    )

    def output_count(self) -> int:
        return self.batch_size

    @model_validator(mode="after")
    def _task_rules(self) -> AceStepRequest:
        task = self.task
        if task in _NEEDS_SOURCE and self.audio is None:
            raise ValueError(f"audio: task {task!r} needs source audio")
        if task == "text2music":
            if self.audio is not None:
                raise ValueError("audio: text2music does not take source audio (use lego, repaint or cover)")
            if self.caption is None:
                raise ValueError("caption: required for text2music")
        if task == "lego" and (self.track_type is None or self.bpm is None):
            missing = [name for name in ("track_type", "bpm") if getattr(self, name) is None]
            raise ValueError(f"{' and '.join(missing)}: required for lego")
        if task == "extract" and self.track_type is None:
            raise ValueError("track_type: required for extract")
        if self.complete_with is not None and task != "complete":
            raise ValueError(f"complete_with: only for complete, not {task!r}")
        if task not in ("lego", "extract") and self.track_type is not None:
            raise ValueError(f"track_type: only for lego and extract, not {task!r}")
        has_section = self.repainting_start is not None or self.repainting_end is not None
        if has_section and task not in ("lego", "repaint"):
            raise ValueError(f"repainting_start/repainting_end: only for lego and repaint, not {task!r}")
        if task == "repaint" and (self.repainting_start is None or self.repainting_end is None):
            raise ValueError("repainting_start and repainting_end: required for repaint")
        if has_section:
            start, end = self.repainting_start or 0.0, self.repainting_end
            if end is None or end <= start:
                raise ValueError(f"repainting_end: must be after repainting_start ({start:g} s), got {end}")
        return self
