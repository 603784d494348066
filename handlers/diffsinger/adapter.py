"""DiffSinger: an OpenUtau voicebank's ONNX graphs through onnxruntime, singing a .ds score, lyrics on
notes, or text on a default melody.

The bank is read and every graph loaded once (`setup`); a job is checked against the bank (its words,
phonemes, speakers and key-shift range) before any graph but the duration model runs, then each segment
is sung and mixed at its offset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from handlers.diffsinger.catalog import CATALOG
from handlers.diffsinger.config import DiffSingerConfig
from handlers.diffsinger.lyrics import (
    LEAD_IN,
    group_phonemes,
    notes_to_sing,
    phrase_spans,
    split_phrases,
    timed_phonemes,
)
from handlers.diffsinger.runner import Controls, Note, Segment, Synthesizer, check_stop
from handlers.diffsinger.schema import DiffSingerRequest, DsSegment
from handlers.diffsinger.voicebank import Dictionary, Voicebank, load_voicebank
from shared.adapter import JobContext, ModelAdapter, Prediction
from shared.audio import Audio
from shared.errors import InputError
from shared.schemas import AudioLabel
from shared.settings import Settings
from shared.stop import StopSignal


def seconds_to_render(spans: list[tuple[float, float]]) -> float:
    """What the graphs will sing, from each segment's (start, length): the song's length, or the segments'
    lengths together where they overlap, since each segment is rendered whole."""
    return max(max(start + length for start, length in spans), sum(length for _, length in spans))


def vocoders_dir(config: DiffSingerConfig, settings: Settings) -> Path:
    return config.vocoders_dir or settings.volume_root / CATALOG.worker / "vocoders"


class DiffSinger(ModelAdapter[DiffSingerRequest, DiffSingerConfig]):
    catalog = CATALOG
    request_model = DiffSingerRequest
    config_model = DiffSingerConfig
    runtime: ClassVar[str] = "onnxruntime"
    gpu_dtype: ClassVar[str] = "float32"  # the graphs' own; reported only

    @classmethod
    def model_dir_variable(cls, config: DiffSingerConfig) -> Path | None:
        return config.model_path

    @classmethod
    def prepare(cls, model_dir: Path, config: DiffSingerConfig, settings: Settings) -> None:
        load_voicebank(model_dir, vocoders_dir(config, settings))  # a broken bank is known before any job

    @classmethod
    def check_request(cls, request: DiffSingerRequest, config: DiffSingerConfig) -> None:
        """The song as it will be rendered, before any graph runs: a score's segments at their offsets, or
        the phrases of lyrics and text with their lead-ins, rests and tails."""
        if request.ds is not None:
            field, spans = "ds", [(segment.offset, segment.seconds()) for segment in request.ds]
        else:
            field = "text" if request.text is not None else "lyrics"
            spans = phrase_spans(notes_to_sing(request))
        seconds = seconds_to_render(spans)
        if seconds > config.max_seconds:
            raise InputError(
                f"{field}: the song sings {seconds:.6g} s, over this endpoint's {config.max_seconds:g} s "
                "(DIFFSINGER_MAX_SECONDS)"
            )

    def setup(self) -> None:
        self.bank: Voicebank = load_voicebank(self.model_dir, vocoders_dir(self.config, self.settings))
        self.synthesizer = Synthesizer(self.bank, self.device, self.config.threads)

    def example_input(self) -> dict[str, Any]:
        """A word of the bank's own dictionary, sung twice: test_input.json's phonemes are one bank's."""
        dictionary, language = self._dictionary(None, "text")
        word = next(iter(dictionary.entries))
        return {"text": f"{word} {word}", "language": language or None, "steps": 4, "seed": 42}

    def predict(self, request: DiffSingerRequest, audio_inputs: dict[AudioLabel, Audio], job: JobContext) -> Prediction:
        self.synthesizer.reseed(job.seed)  # before any graph runs, the duration model's included
        mix = self._speaker_mix(request.speaker, request.speaker_mix, "speaker_mix")
        gender = self._gender(request.key_shift, request.gender)
        if request.ds is not None:
            segments = []
            for number, given in enumerate(request.ds):
                check_stop(job.stop)  # each segment's checks read the whole segment
                segments.append(self._segment(number, given))
            mixes = [
                self._speaker_mix(None, given.spk_mix, f"ds.{number}.spk_mix") if given.spk_mix is not None else mix
                for number, given in enumerate(request.ds)
            ]
        else:
            segments = self._sung(request, mix, job.stop)
            mixes = [mix] * len(segments)
        rate = self.bank.mel.sample_rate
        song = np.zeros(round(max(s.offset + sum(s.durations) for s in segments) * rate), dtype=np.float32)
        for number, (segment, segment_mix) in enumerate(zip(segments, mixes, strict=True)):
            job.progress("singing", number / len(segments))
            controls = Controls(segment_mix, gender, request.velocity, request.steps, request.depth)
            waveform = self.synthesizer.render(segment, controls, job.stop)
            start = round(segment.offset * rate)
            end = min(song.size, start + waveform.size)
            song[start:end] += waveform[: end - start]
        details = {
            "voicebank": self.bank.name,
            "speakers": list(self.bank.acoustic.speakers),
            "segments": len(segments),
            "steps": request.steps,
            "depth": min(request.depth, self.bank.max_depth) if self.bank.variable_depth else None,
        }
        if request.ds is None:
            # What the dictionary made of the words, phrase by phrase.
            details["phonemes"] = " | ".join(" ".join(segment.phonemes) for segment in segments)
        return Prediction([Audio(np.clip(song, -1.0, 1.0)[:, None], rate)], details=details)

    def _sung(self, request: DiffSingerRequest, mix: dict[str, float], stop: StopSignal) -> list[Segment]:
        """Lyrics on notes, or text on the default melody, as phrases (rests split them, as OpenUtau renders
        phrase by phrase: no graph runs over a whole song), timed by the bank's duration model."""
        field = "text" if request.text is not None else "lyrics"
        if self.synthesizer.dur is None:
            raise InputError(
                f"{field}: this bank has no timing model (dsdur/, or dur in its dsconfig.yaml) to place phonemes "
                "on notes; send a .ds score with every phoneme's duration"
            )
        dictionary, language = self._dictionary(request.language, field)
        phrases = []
        for start, sung in split_phrases(notes_to_sing(request)):
            check_stop(stop)
            phrases.append((start, group_phonemes(sung, dictionary, self.bank.dur, language, field), sung))
        self._check_phonemes([s for _, groups, _ in phrases for g in groups for s in g.phonemes], field, True)
        segments = []
        for start, groups, sung in phrases:
            end = LEAD_IN + sum(note.seconds for note in sung)
            predicted = self.synthesizer.predict_durations(groups, end, mix, stop)
            timed = timed_phonemes(groups, predicted, self.bank.dur, sung)
            notes_sung = zip(timed.note_midi, timed.note_seconds, strict=True)
            segments.append(
                Segment(
                    offset=start,
                    phonemes=timed.phonemes,
                    durations=timed.durations,
                    notes=[Note(midi, seconds) for midi, seconds in notes_sung],
                    words=timed.word_div,
                )
            )
        return segments

    def _dictionary(self, language: str | None, field: str) -> tuple[Dictionary, str]:
        """The timing model's dictionary for the language (dsdict-<language>.yaml, else dsdict.yaml); by
        default the bank's first language whose dictionary is not disabled."""
        known = self.bank.languages
        disabled = self.bank.disabled_languages
        if language is not None and known and language not in known:
            raise InputError(f"language: {language} is not one of this bank's ({', '.join(known)})")
        if language is None:
            language = next((name for name in known if name not in disabled), known[0] if known else "")
        if language in disabled:
            raise InputError(f"language: {language} is disabled: its dictionary failed to load ({disabled[language]})")
        dictionary = self.bank.dictionaries.get(language) or self.bank.dictionaries.get("")
        if dictionary is None:
            where = self.bank.dur.folder.relative_to(self.bank.folder) / "dsdict*.yaml"
            raise InputError(f"{field}: this bank has no dictionary for {language or 'its language'} ({where})")
        return dictionary, language

    def _speaker_mix(self, speaker: str | None, weights: dict[str, float] | None, field: str) -> dict[str, float]:
        names = self.bank.acoustic.speakers
        if not names:
            if speaker is not None or weights:
                raise InputError(f"{'speaker' if speaker else field}: this bank has a single voice")
            return {}
        wanted = {speaker: 1.0} if speaker is not None else dict(weights or {names[0]: 1.0})
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise InputError(
                f"{'speaker' if speaker else field}: {', '.join(unknown)} is not a speaker of this bank "
                f"(speakers: {', '.join(names)})"
            )
        total = sum(wanted.values())
        if not total > 0:
            raise InputError(f"{field}: at least one weight above 0")
        return {name: weight / total for name, weight in wanted.items()}

    def _gender(self, key_shift: float, gender: float | None) -> float:
        """The key-shift embedding's input, in -1..1: key_shift over the bank's range (positive: higher)."""
        if key_shift == 0 and not gender:
            return 0.0
        field = "gender" if gender else "key_shift"
        bounds = self.bank.key_shift_range
        if bounds is None or not self.synthesizer.acoustic.takes("gender"):
            raise InputError(f"{field}: this bank has no key-shift embedding; leave {field} unset")
        if gender:
            return gender
        low, high = bounds
        if not low <= key_shift <= high:
            raise InputError(f"key_shift: {key_shift:g} is outside this bank's range {low:g}..{high:g} semitones")
        return key_shift / high if key_shift > 0 else key_shift / abs(low)

    def _check_phonemes(self, phonemes: list[str], field: str, pitch_predicted: bool) -> None:
        """Every phoneme in each table a graph will read, before any graph runs."""
        tables = [self.bank.acoustic]
        if pitch_predicted and self.bank.pitch is not None:
            tables.append(self.bank.pitch)
        if self.bank.variance is not None and self.synthesizer.needed_curves:
            tables.append(self.bank.variance)
        for stage in tables:
            unknown = sorted({symbol for symbol in phonemes if symbol not in stage.phonemes})
            if unknown:
                where = stage.folder.relative_to(self.bank.folder).as_posix()
                raise InputError(
                    f"{field}: {', '.join(unknown[:10])} not in this bank's phoneme table"
                    f"{f' ({where}/)' if where != '.' else ''}"
                )

    def _segment(self, number: int, given: DsSegment) -> Segment:
        phonemes = given.phonemes()
        self._check_phonemes(phonemes, f"ds.{number}.ph_seq", pitch_predicted=given.f0_seq is None)
        curves = {}
        for name in ("energy", "breathiness", "voicing", "tension", "gender", "velocity"):
            curve = given.curve(name)
            if curve is not None:
                curves[name] = (np.asarray(curve[0], dtype=np.float32), curve[1])
        f0 = given.curve("f0")
        return Segment(
            offset=given.offset,
            phonemes=phonemes,
            durations=given.durations(),
            notes=[Note(midi, seconds) for midi, seconds in given.notes()],
            words=given.words(),
            f0=(np.asarray(f0[0], dtype=np.float32), f0[1]) if f0 else None,
            curves=curves,
        )
