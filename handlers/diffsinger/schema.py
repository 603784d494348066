"""The DiffSinger request: a .ds score and the voice controls, every input once (no onnxruntime here).

A .ds score is DiffSinger's own format (what OpenUtau exports): a list of segments whose sequences are
space-separated strings. Fields of the format this worker does not use (text, input_type, ...) are
ignored, as DiffSinger's inference does; the ones it uses are checked here, before any graph runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from shared.schemas import BulkyInput, JobRequest

NOTE_NAME = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)([+-]\d+)?$")  # C4, D#3, Eb5, C4+20 (cents)
SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
CURVES = ("energy", "breathiness", "voicing", "tension", "gender", "velocity")
MAX_SEGMENTS = 200


def note_to_midi(name: str) -> float | None:
    """MIDI number of a note name (C4 = 60, cents allowed); None for "rest"."""
    if name.lower() == "rest":
        return None
    match = NOTE_NAME.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a note name (C4, D#3, Eb5, rest)")
    letter, accidental, octave, cents = match.groups()
    semitone = SEMITONES[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]
    return 12 * (int(octave) + 1) + semitone + (int(cents) / 100 if cents else 0.0)


def _numbers(text: str, field: str) -> list[float]:
    try:
        values = [float(item) for item in text.split()]
    except ValueError:
        raise ValueError(f"{field}: space-separated numbers expected") from None
    if not all(value == value and abs(value) != float("inf") for value in values):
        raise ValueError(f"{field}: NaN or infinity")
    return values


def _number_string(value: Any) -> Any:
    """.ds files write timesteps and static curves either as numbers or as numeric strings."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Sequence = Annotated[str, StringConstraints(min_length=1, max_length=200_000)]
Timestep = Annotated[float, BeforeValidator(_number_string), Field(gt=0, le=1)]


class DsSegment(BaseModel):
    """One segment of a .ds score; sequences are space-separated, durations in seconds."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    offset: float = Field(0.0, ge=0, le=3600, description="Seconds from the start of the song.")
    ph_seq: Sequence = Field(description="Phonemes (SP: silence, AP: breath), as the bank's phoneme table names them.")
    ph_dur: Sequence = Field(description="Seconds per phoneme.")
    ph_num: Sequence | None = Field(None, description="Phonemes per word; sums to the phoneme count.")
    note_seq: Sequence | None = Field(None, description="Note names per note (C4, D#3, rest).")
    note_dur: Sequence | None = Field(None, description="Seconds per note.")
    note_slur: Sequence | None = Field(None, description="0/1 per note: 1 continues the previous word's vowel.")
    f0_seq: Sequence | None = Field(None, description="Pitch in Hz every f0_timestep seconds; else predicted.")
    f0_timestep: Timestep | None = None
    energy: Sequence | None = None
    energy_timestep: Timestep | None = None
    breathiness: Sequence | None = None
    breathiness_timestep: Timestep | None = None
    voicing: Sequence | None = None
    voicing_timestep: Timestep | None = None
    tension: Sequence | None = None
    tension_timestep: Timestep | None = None
    gender: Annotated[float | str, BeforeValidator(_number_string)] | None = None
    gender_timestep: Timestep | None = None
    velocity: Annotated[float | str, BeforeValidator(_number_string)] | None = None
    velocity_timestep: Timestep | None = None
    spk_mix: dict[str, float] | None = Field(None, description="Speaker weights for this segment.")

    def phonemes(self) -> list[str]:
        return self.ph_seq.split()

    def durations(self) -> list[float]:
        return _numbers(self.ph_dur, "ph_dur")

    def words(self) -> list[int]:
        return [int(value) for value in _numbers(self.ph_num, "ph_num")] if self.ph_num else []

    def notes(self) -> list[tuple[float | None, float]]:
        if not self.note_seq:
            return []
        return list(zip(map(note_to_midi, self.note_seq.split()), _numbers(self.note_dur, "note_dur"), strict=True))

    def curve(self, name: str) -> tuple[list[float], float] | None:
        """A curve and its timestep; a static number is a one-sample curve."""
        value = getattr(self, "f0_seq" if name == "f0" else name)
        if value is None:
            return None
        if isinstance(value, float):
            return [value], 1.0
        return _numbers(value, name), getattr(self, f"{name}_timestep")

    @model_validator(mode="after")
    def _consistent(self) -> DsSegment:
        phonemes = self.phonemes()
        durations = self.durations()
        if len(durations) != len(phonemes):
            raise ValueError(f"ph_dur: {len(durations)} durations for {len(phonemes)} phonemes in ph_seq")
        if any(value < 0 for value in durations):
            raise ValueError("ph_dur: a negative duration")
        if self.ph_num is not None:
            words = _numbers(self.ph_num, "ph_num")
            if any(value < 1 or value != int(value) for value in words) or sum(words) != len(phonemes):
                raise ValueError(
                    f"ph_num: positive whole numbers summing to the {len(phonemes)} phonemes (got sum {sum(words):g})"
                )
        if (self.note_seq is None) != (self.note_dur is None):
            raise ValueError("note_seq and note_dur: give both or neither")
        if self.note_seq is not None:
            notes = self.note_seq.split()
            lengths = {"note_dur": len(_numbers(self.note_dur, "note_dur"))}
            if self.note_slur is not None:
                lengths["note_slur"] = len(self.note_slur.split())
            wrong = [f"{name} has {length}" for name, length in lengths.items() if length != len(notes)]
            if wrong:
                raise ValueError(f"note_seq has {len(notes)} notes but {', '.join(wrong)}")
            for note in notes:
                note_to_midi(note)
        if self.f0_seq is None and self.note_seq is None:
            raise ValueError("f0_seq or note_seq: the pitch needs one of them")
        for name in ("f0", *CURVES):
            value = getattr(self, "f0_seq" if name == "f0" else name)
            if isinstance(value, str) and getattr(self, f"{name}_timestep") is None:
                raise ValueError(f"{name}_timestep: required with a {name} curve")
            if isinstance(value, str):
                _numbers(value, name)
        return self


def _segments(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


class DiffSingerRequest(JobRequest):
    ds: Annotated[
        list[DsSegment], BeforeValidator(_segments), Field(min_length=1, max_length=MAX_SEGMENTS), BulkyInput()
    ] = Field(description="A .ds score: one segment or a list of them, sung and mixed at their offsets.")
    speaker: str | None = Field(None, description="One of the bank's speakers; default: its first.")
    speaker_mix: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = Field(
        None, description="Speaker weights (normalized to sum 1); instead of speaker."
    )
    key_shift: float = Field(
        0.0, ge=-24, le=24, description="Formant shift in semitones (the bank's key-shift embedding), within its range."
    )
    velocity: float = Field(1.0, ge=0.5, le=2.0, description="Consonant speed ratio (banks with a speed embedding).")
    steps: int = Field(20, ge=1, le=100, description="Diffusion (or rectified-flow) steps of the acoustic model.")
    depth: float = Field(1.0, ge=0.0, le=1.0, description="Shallow-diffusion depth, capped at the bank's max_depth.")

    @model_validator(mode="after")
    def _voice_rules(self) -> DiffSingerRequest:
        if self.speaker is not None and self.speaker_mix is not None:
            raise ValueError("speaker and speaker_mix: give one or the other, not both")
        if self.speaker_mix is not None and not sum(self.speaker_mix.values()) > 0:
            raise ValueError("speaker_mix: at least one weight above 0")
        return self

    def total_seconds(self) -> float:
        return max(segment.offset + sum(segment.durations()) for segment in self.ds)


DiffSingerRequest.model_rebuild()
