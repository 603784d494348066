"""Lyrics on notes -> a segment with every phoneme timed, as OpenUtau's DiffSinger phonemizer does it.

Words become phonemes as OpenUtau's DiffSinger phonemizers make them: the phonemes a word spells in brackets
(`read[r eh d]`), else the bank's dictionary (dsdict*.yaml beside its timing model), else the word itself when
it is one of the bank's phonemes. A word's vowels start on its notes: the consonants before a vowel are sung
at the end of the previous note (or of the lead-in), so each vowel lands on its note's onset. The bank's
duration model predicts every phoneme's length; the phonemes between two note onsets are then scaled to fill
exactly the time between them. Text alone is sung on a default melody (`melody_for_text`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from handlers.diffsinger.schema import PHONETIC_HINT, DiffSingerRequest, lyric_words, phonetic_hint
from handlers.diffsinger.voicebank import Dictionary, StageConfig
from shared.errors import InputError

LEAD_IN = 0.5  # seconds of silence (and the first word's leading consonants) before the first note
TAIL = 0.3  # seconds of silence after the last note, so the voice is not cut
CONTINUE = "+"  # a lyric that carries the previous word onto this note (a melisma)
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
CONTOUR = (0, 2, 4, 3, 4, 2, 1, 0)  # scale degrees the default melody walks through, one per word


@dataclass(frozen=True)
class SungNote:
    midi: float | None  # None: a rest
    seconds: float
    lyric: str | None  # a word, CONTINUE, or None on a rest


@dataclass
class Group:
    """Phonemes that start together at one note onset (the timing model's "word")."""

    phonemes: list[str]
    start: float  # seconds
    midi: float | None


@dataclass(frozen=True)
class TimedPhonemes:
    phonemes: list[str]
    durations: list[float]  # seconds
    word_div: list[int]  # the groups, for the timing model
    note_seconds: list[float]  # the notes as sung, with the lead-in and tail rests
    note_midi: list[float | None]


def melody_for_text(text: str, key_midi: float, bpm: float) -> list[SungNote]:
    """One word per beat on a contour of the major scale from `key_midi`; punctuation rests half a beat,
    and the last word holds two beats."""
    beat = 60.0 / bpm
    word = r"[^\W_]+(?:'[^\W_]+)*"
    pattern = rf"(?:{word})?{PHONETIC_HINT.pattern}(?:{word})?|{word}|[.,!?;:]"
    tokens = [match.group(0) for match in re.finditer(pattern, text)]
    notes: list[SungNote] = []
    sung = 0
    for token in tokens:
        if token in ".,!?;:":
            if notes and notes[-1].lyric is not None:
                notes.append(SungNote(None, beat / 2, None))
            continue
        degree = CONTOUR[sung % len(CONTOUR)]
        notes.append(SungNote(key_midi + MAJOR_SCALE[degree], beat, token))
        sung += 1
    while notes and notes[-1].lyric is None:
        notes.pop()
    if not notes:
        raise InputError("text: no word to sing in it")
    last = notes[-1]
    notes[-1] = SungNote(last.midi, 2 * beat, last.lyric)
    return notes


def notes_to_sing(request: DiffSingerRequest) -> list[SungNote]:
    """The notes of lyrics or text as they will be sung, in seconds."""
    if request.text is not None:
        return melody_for_text(request.text, request.key, request.bpm or 120.0)
    words = iter(lyric_words(request.lyrics, "lyrics"))
    beat = request.beat_seconds()
    return [
        SungNote(note.pitch, note.duration * beat, next(words) if note.pitch is not None else None)
        for note in request.notes
    ]


def phrase_spans(notes: list[SungNote]) -> list[tuple[float, float]]:
    """Where each phrase's segment starts in the song and how long it lasts: lead-in, notes and tail."""
    return [(start, LEAD_IN + sum(note.seconds for note in sung) + TAIL) for start, sung in split_phrases(notes)]


def split_phrases(notes: list[SungNote]) -> list[tuple[float, list[SungNote]]]:
    """The sung runs between rests, each with where its lead-in starts in the song (the song starts with
    the first phrase's lead-in): a phrase's lead-in overlaps the rest before it."""
    phrases: list[tuple[float, list[SungNote]]] = []
    time = 0.0
    after_rest = True
    for note in notes:
        if note.lyric is not None:
            if after_rest:
                phrases.append((time, []))
            phrases[-1][1].append(note)
        after_rest = note.lyric is None
        time += note.seconds
    return phrases


def _as_phoneme(symbol: str, dictionary: Dictionary, stage: StageConfig, language: str) -> str | None:
    """The bank's phoneme a symbol names, as OpenUtau validates a typed phoneme: declared by the dictionary
    and known to the timing model, as spelled or else prefixed with the language."""
    for candidate in [symbol, f"{language}/{symbol}"] if language else [symbol]:
        if candidate in dictionary.symbols and candidate in stage.phonemes:
            return candidate
    return None


def _phonemes_of(word: str, dictionary: Dictionary, stage: StageConfig, language: str, field: str) -> list[str]:
    """A word's phonemes in OpenUtau's order: those it spells in brackets, else its dictionary entry, else the
    word itself when it is a phoneme."""
    text, spelled = phonetic_hint(word)
    if spelled is not None:
        phonemes = []
        for symbol in spelled:
            phoneme = _as_phoneme(symbol, dictionary, stage, language)
            if phoneme is None:
                raise InputError(f"{field}: {word!r} spells {symbol}, which is not one of this bank's phonemes")
            phonemes.append(phoneme)
        return phonemes
    entry = dictionary.lookup(text)
    if entry is None:
        phoneme = _as_phoneme(text, dictionary, stage, language)
        if phoneme is None:
            raise InputError(
                f"{field}: {word!r} is not in this bank's dictionary; spell its phonemes in brackets: {text}[ph ph]"
            )
        return [phoneme]
    phonemes = []
    for symbol in entry:
        # As OpenUtau validates a dictionary's phoneme: as spelled, else prefixed with the language.
        for candidate in (symbol, f"{language}/{symbol}"):
            if candidate in stage.phonemes:
                phonemes.append(candidate)
                break
        else:
            raise InputError(f"{field}: {word!r} needs phoneme {symbol}, which this bank's timing model lacks")
    return phonemes


def _vowel_starts(phonemes: list[str], dictionary: Dictionary) -> list[int]:
    """Where a word's notes start: each vowel, or the glide of a consonant-glide-vowel onset."""
    starts = []
    for index, symbol in enumerate(phonemes):
        if symbol not in dictionary.vowels:
            continue
        glide_first = (
            index >= 2 and phonemes[index - 1] in dictionary.glides and phonemes[index - 2] not in dictionary.vowels
        )
        starts.append(index - 1 if glide_first else index)
    return starts or [0]


def group_phonemes(
    notes: list[SungNote], dictionary: Dictionary, stage: StageConfig, language: str, field: str
) -> list[Group]:
    """The timing model's groups: the lead-in's, then one per note a vowel (or a rest) starts on."""
    groups = [Group(["SP"], 0.0, None)]
    time = LEAD_IN
    index = 0
    while index < len(notes):
        note = notes[index]
        if note.lyric is None:
            groups.append(Group(["SP"], time, None))
            time += note.seconds
            index += 1
            continue
        carried = [note]
        while index + len(carried) < len(notes) and notes[index + len(carried)].lyric == CONTINUE:
            carried.append(notes[index + len(carried)])
        phonemes = _phonemes_of(note.lyric, dictionary, stage, language, field)
        starts = _vowel_starts(phonemes, dictionary)
        groups[-1].phonemes += phonemes[: starts[0]]  # leading consonants: before the note's onset
        onset = time
        for number, start in enumerate(starts):
            part = phonemes[start : starts[number + 1] if number + 1 < len(starts) else len(phonemes)]
            if number < len(carried):
                groups.append(Group(part, onset, carried[number].midi))
                onset += carried[number].seconds
            else:
                groups[-1].phonemes += part  # more vowels than notes: the last note sings them
        time += sum(one.seconds for one in carried)
        index += len(carried)
    groups.append(Group(["SP"], time, None))
    return groups


def align(groups: list[Group], predicted_frames: np.ndarray, frame_seconds: float, end: float) -> list[float]:
    """Seconds per phoneme: the predicted lengths, scaled between note onsets so each group starts on time."""
    sizes = [len(group.phonemes) for group in groups]
    firsts = np.cumsum([0, *sizes])[:-1]
    predicted = np.maximum(predicted_frames.astype(np.float64), 1e-3) * frame_seconds
    durations = np.zeros(len(predicted))
    # The lead-in: its consonants keep their predicted length and end on the first note; SP takes the rest.
    head = predicted[1 : firsts[1]]
    room = groups[1].start - 0.05
    if head.sum() > room:
        head = head * room / head.sum()
    durations[1 : firsts[1]] = head
    durations[0] = groups[1].start - head.sum()
    anchors = [*zip(firsts[1:], [group.start for group in groups[1:]], strict=True), (len(predicted), end)]
    for (first, start), (next_first, next_start) in zip(anchors[:-1], anchors[1:], strict=True):
        span = predicted[first:next_first]
        durations[first:next_first] = span * (next_start - start) / span.sum()
    return durations.tolist()


def timed_phonemes(groups: list[Group], predicted_frames: np.ndarray, stage: StageConfig, notes: list[SungNote]):
    end = LEAD_IN + sum(note.seconds for note in notes)
    durations = align(groups, predicted_frames, stage.frame_seconds, end)
    # The closing SP group spans the tail.
    durations[-1] = TAIL
    return TimedPhonemes(
        phonemes=[symbol for group in groups for symbol in group.phonemes],
        durations=durations,
        word_div=[len(group.phonemes) for group in groups],
        note_seconds=[LEAD_IN, *(note.seconds for note in notes), TAIL],
        note_midi=[None, *(note.midi for note in notes), None],
    )
