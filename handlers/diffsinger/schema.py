"""The DiffSinger request: what to sing (a .ds score, lyrics on notes, or text alone) and the voice
controls, every input once (no onnxruntime here).

A .ds score is DiffSinger's own format (what OpenUtau exports): a list of segments whose sequences are
space-separated strings. Fields of the format this worker does not use (text, input_type, ...) are
ignored, as DiffSinger's inference does; the ones it uses are checked here, before any graph runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from shared.schemas import BulkyInput, JobRequest

NOTE_NAME = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)([+-]\d+)?$")  # C4, D#3, Eb5, C4+20 (cents)
SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
CURVES = ("energy", "breathiness", "voicing", "tension", "gender", "velocity")
MAX_SEGMENTS = 200
MIDI_RANGE = (0, 127)  # C-1 to G9: the notes a score or `notes` may hold
F0_MAX_HZ = 12543.85  # G9, MIDI 127: the highest pitch an f0 curve may ask for
FLOAT32_MAX = 3.4028234663852886e38  # the graphs compute in float32: anything larger becomes infinity
# OpenUtau's lyric syntax for a word's phonemes: `read[r eh d]` sings r eh d whatever the dictionary says.
PHONETIC_HINT = re.compile(r"\[([^\[\]]*)\]")
_LYRIC_WORD = re.compile(r"(?:[^\s\[\]]|\[[^\[\]]*\])+")  # whitespace splits words, except inside brackets


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


class _FieldRule(ValueError):
    """A rule one field of a .ds segment breaks, found by a check that reads several fields."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(rule)
        self.field = field


def _float32(values: list[float], field: str) -> list[float]:
    if not all(abs(value) <= FLOAT32_MAX for value in values):  # False for NaN too
        raise _FieldRule(field, "NaN, infinity, or a number beyond float32's range (3.4e38), in which the graphs run")
    return values


def _numbers(text: str, field: str) -> list[float]:
    try:
        values = [float(item) for item in text.split()]
    except ValueError:
        raise _FieldRule(field, "space-separated numbers expected") from None
    return _float32(values, field)


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
SpeakerWeights = dict[str, Annotated[float, Field(ge=0, le=1)]]


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
    spk_mix: SpeakerWeights | None = Field(None, description="Speaker weights for this segment, 0-1, some above 0.")

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

    def seconds(self) -> float:
        """How long the segment lasts: its phonemes, or its notes where they run longer (the runner fits the
        notes to the phonemes, but a note's length must still be one the frame arithmetic can hold)."""
        note_seconds = sum(seconds for _, seconds in self.notes())
        return max(sum(self.durations()), note_seconds)

    def curve(self, name: str) -> tuple[list[float], float] | None:
        """A curve and its timestep; a static number is a one-sample curve."""
        field = "f0_seq" if name == "f0" else name
        value = getattr(self, field)
        if value is None:
            return None
        if isinstance(value, float):
            return _float32([value], field), 1.0
        return _numbers(value, field), getattr(self, f"{name}_timestep")

    @model_validator(mode="after")
    def _consistent(self) -> DsSegment:
        try:
            self._check_fields()
        except _FieldRule as broken:
            # Located at the field (ds.N.<field>), as pydantic locates an error of one field alone.
            error = PydanticCustomError("value_error", "{rule}", {"rule": str(broken)})
            details = InitErrorDetails(type=error, loc=(broken.field,), input=getattr(self, broken.field))
            raise ValidationError.from_exception_data(type(self).__name__, [details]) from None
        return self

    def _check_fields(self) -> None:
        phonemes = self.phonemes()
        durations = self.durations()
        if len(durations) != len(phonemes):
            raise _FieldRule("ph_dur", f"{len(durations)} durations for the {len(phonemes)} phonemes of ph_seq")
        if any(value < 0 for value in durations):
            raise _FieldRule("ph_dur", "a negative duration")
        if not sum(durations) > 0:
            raise _FieldRule("ph_dur", "the phonemes last 0 s; a segment needs some length")
        if self.ph_num is not None:
            words = _numbers(self.ph_num, "ph_num")
            if any(value < 1 or value != int(value) for value in words) or sum(words) != len(phonemes):
                raise _FieldRule(
                    "ph_num",
                    f"positive whole numbers summing to the {len(phonemes)} phonemes (these sum to {sum(words):g})",
                )
        if (self.note_seq is None) != (self.note_dur is None):
            raise _FieldRule("note_dur" if self.note_dur is None else "note_seq", "give note_seq and note_dur together")
        if self.note_seq is not None:
            self._check_notes()
            self._check_words()
        elif self.f0_seq is None:
            raise _FieldRule("note_seq", "required without f0_seq: the pitch needs one of them")
        for name in ("f0", *CURVES):
            is_curve = isinstance(getattr(self, "f0_seq" if name == "f0" else name), str)
            if is_curve and getattr(self, f"{name}_timestep") is None:
                raise _FieldRule(f"{name}_timestep", f"required with a {name} curve")
            self.curve(name)  # for its number errors
        f0 = self.curve("f0")
        if f0 is not None and not all(0 <= hz <= F0_MAX_HZ for hz in f0[0]):
            raise _FieldRule("f0_seq", f"Hz from 0 to {F0_MAX_HZ:g} (G9, MIDI 127)")
        if self.spk_mix is not None and not sum(self.spk_mix.values()) > 0:
            raise _FieldRule("spk_mix", "at least one weight above 0")

    def _check_notes(self) -> None:
        names = self.note_seq.split()
        note_durations = _numbers(self.note_dur, "note_dur")
        lengths = {"note_dur": len(note_durations)}
        if self.note_slur is not None:
            lengths["note_slur"] = len(self.note_slur.split())
        for field, length in lengths.items():
            if length != len(names):
                raise _FieldRule(field, f"{length} values for the {len(names)} notes of note_seq")
        if any(value < 0 for value in note_durations):
            raise _FieldRule("note_dur", "a negative duration")
        if self.note_slur is not None and any(value not in (0, 1) for value in _numbers(self.note_slur, "note_slur")):
            raise _FieldRule("note_slur", "0 or 1 per note (1: the note continues the word before)")
        low, high = MIDI_RANGE
        for name in names:
            try:
                midi = note_to_midi(name)
            except ValueError as exc:
                raise _FieldRule("note_seq", str(exc)) from None
            if midi is not None and not low <= midi <= high:
                raise _FieldRule("note_seq", f"{name!r} is outside MIDI {low}..{high} (C-1 to G9)")

    def _check_words(self) -> None:
        """A word per note that is not a slur (rests are words too), as DiffSinger's input processing reads
        ph_num against the notes: ph_num splits the phonemes into the notes' words."""
        if self.ph_num is None:
            return
        words = len(self.ph_num.split())
        slurs = _numbers(self.note_slur, "note_slur") if self.note_slur is not None else []
        notes = len(self.note_seq.split())
        starts = notes - int(sum(slurs))
        if words != starts:
            raise _FieldRule(
                "ph_num",
                f"{words} words for the {starts} notes that start one: a word per note whose note_slur is 0 "
                "(a rest is a word too; a note with note_slur 1 continues the word before)",
            )


def lyric_words(text: str, field: str) -> list[str]:
    """The words of lyrics, a word's [phonemes] kept with it: `read[r eh d] it` is two words."""
    if re.search(r"[\[\]]", PHONETIC_HINT.sub("", text)):
        raise ValueError(f"{field}: a [ without its ] or a ] without its [; brackets spell a word's phonemes: a[ah]")
    words = _LYRIC_WORD.findall(text)
    for word in words:
        if len(PHONETIC_HINT.findall(word)) > 1:
            raise ValueError(f"{field}: {word!r} spells its phonemes twice; one [...] per word")
    return words


def phonetic_hint(word: str) -> tuple[str, list[str] | None]:
    """A word and the phonemes its brackets spell, as OpenUtau splits a lyric; None without brackets, or
    with empty ones (then the dictionary reads the word, as in OpenUtau)."""
    match = PHONETIC_HINT.search(word)
    if match is None:
        return word, None
    spelled = match.group(1).split()
    return (word[: match.start()] + word[match.end() :]).strip(), spelled or None


def _pitch(value: Any) -> Any:
    """A MIDI number as it is, a note name's number, None (JSON null) for "rest" or null."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return note_to_midi(str(value))


Midi = Annotated[float, Field(ge=MIDI_RANGE[0], le=MIDI_RANGE[1])]


class NoteSpec(BaseModel):
    """One note of `notes`: its pitch and its length."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    pitch: Annotated[Midi | None, BeforeValidator(_pitch, json_schema_input_type=str | Midi | None)] = Field(
        description="A note name (C4, D#3, Eb5), a MIDI number, or rest (also null)."
    )
    duration: float = Field(gt=0, le=60, description="Seconds, or beats when bpm is given.")


Lyrics = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]


def _segments(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


class DiffSingerRequest(JobRequest):
    ds: (
        Annotated[
            list[DsSegment], BeforeValidator(_segments), Field(min_length=1, max_length=MAX_SEGMENTS), BulkyInput()
        ]
        | None
    ) = Field(None, description="A .ds score: one segment or a list of them, sung and mixed at their offsets.")
    lyrics: Lyrics | None = Field(
        None,
        description="Words, one per sung note of `notes` (rests take none); + carries a word onto its note. "
        "A word may spell its phonemes in brackets, as OpenUtau lyrics do: read[r eh d], or [r eh d] alone; "
        "a word missing from the bank's dictionary that is itself a phoneme is sung as that phoneme.",
    )
    notes: Annotated[list[NoteSpec], Field(min_length=1, max_length=5000)] | None = Field(
        None, description="The melody for lyrics: [{pitch, duration}], rests included."
    )
    bpm: float | None = Field(None, ge=20, le=400, description="Tempo: note durations (and text) in beats.")
    text: Lyrics | None = Field(
        None,
        description="Words alone, sung on a default melody in `key` at `bpm`; a word may spell its phonemes "
        "in brackets as in lyrics: read[r eh d].",
    )
    key: Annotated[float, BeforeValidator(_pitch, json_schema_input_type=str | float), Field(ge=36, le=84)] = Field(
        60.0, description="Tonic of the default melody for text: a note name or MIDI number (default C4, 60)."
    )
    language: str | None = Field(
        None,
        description="The lyrics' language, for banks with several: which dictionary and phoneme prefix; "
        "default: the bank's first language not disabled (a broken dsdict-<language>.yaml disables it).",
    )
    model: Literal["diffsinger"] | None = Field(None, description="Accepted for clients that name the model.")
    speaker: str | None = Field(None, description="One of the bank's speakers; default: its first.")
    speaker_mix: SpeakerWeights | None = Field(
        None, description="Speaker weights (normalized to sum 1); instead of speaker."
    )
    key_shift: float = Field(
        0.0, ge=-24, le=24, description="Formant shift in semitones (the bank's key-shift embedding), within its range."
    )
    gender: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="DiffSinger's formant control (as in .ds scores): +1 is key_shift at the top "
        "of the bank's range (brighter), -1 at its bottom (darker); instead of key_shift.",
    )
    velocity: float = Field(1.0, ge=0.5, le=2.0, description="Consonant speed ratio (banks with a speed embedding).")
    steps: int = Field(20, ge=1, le=100, description="Diffusion (or rectified-flow) steps of the acoustic model.")
    depth: float = Field(1.0, ge=0.0, le=1.0, description="Shallow-diffusion depth, capped at the bank's max_depth.")

    @model_validator(mode="after")
    def _what_to_sing(self) -> DiffSingerRequest:
        given = [name for name in ("ds", "lyrics", "text") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("ds, lyrics (with notes) or text: give exactly one of them")
        if (self.lyrics is None) != (self.notes is None):
            raise ValueError("lyrics and notes: give both (one word per sung note)")
        if self.text is not None:
            lyric_words(self.text, "text")  # for its bracket errors
        if self.lyrics is not None:
            words = lyric_words(self.lyrics, "lyrics")
            sung = sum(note.pitch is not None for note in self.notes)
            if len(words) != sung:
                raise ValueError(f"lyrics: {len(words)} words for {sung} sung notes (rests take no word)")
            sung_after_rest = [
                index == 0 or self.notes[index - 1].pitch is None
                for index, note in enumerate(self.notes)
                if note.pitch is not None
            ]
            if any(word == "+" and after_rest for word, after_rest in zip(words, sung_after_rest, strict=True)):
                raise ValueError(
                    "lyrics: + carries the previous word onto its note, so it cannot come first or after a rest"
                )
        if self.bpm is not None and self.ds is not None:
            raise ValueError("bpm: for notes and text; a .ds score is timed in seconds")
        return self

    @model_validator(mode="after")
    def _voice_rules(self) -> DiffSingerRequest:
        if self.gender is not None and self.key_shift != 0:
            raise ValueError("gender and key_shift: the same control; give one or the other")
        if self.speaker is not None and self.speaker_mix is not None:
            raise ValueError("speaker and speaker_mix: give one or the other, not both")
        if self.speaker_mix is not None and not sum(self.speaker_mix.values()) > 0:
            raise ValueError("speaker_mix: at least one weight above 0")
        return self

    def beat_seconds(self) -> float:
        return 60.0 / (self.bpm or 120.0) if self.text is not None or self.bpm is not None else 1.0


DiffSingerRequest.model_rebuild()
