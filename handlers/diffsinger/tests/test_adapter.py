"""DiffSinger in process on the tiny banks: scores sung and mixed at their offsets, the voice controls,
the legacy graphs, and every refusal before a graph runs (each followed by a good job)."""

from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from loguru import logger

from handlers.diffsinger.adapter import DiffSinger
from handlers.diffsinger.runner import Graph
from handlers.diffsinger.schema import DsSegment
from handlers.diffsinger.tests.test_rests import CountedStop
from handlers.diffsinger.tiny_bank import JAPANESE_WORDS, move_timing_to_root, write_language_dictionary
from shared.pipeline import Worker
from shared.settings import Settings
from shared.stop import StopSignal

pytestmark = pytest.mark.tiny

JOB = json.loads((Path(__file__).parents[1] / "test_input.json").read_text())["input"]
SEGMENT = JOB["ds"]
LENGTH = 2.08  # seconds of the test segment


@pytest.fixture(scope="module")
def banks(tiny_volume) -> Path:
    return tiny_volume.ensure("diffsinger")


@pytest.fixture
def bank_copy(banks, tmp_path) -> Path:
    """A copy of the tiny bank, in a volume of its own (tmp_path), that a test may rearrange."""
    folder = tmp_path / "diffsinger" / "voicebanks" / "copy"
    shutil.copytree(banks / "diffsinger" / "voicebanks" / "tiny-random-bank", folder)
    return folder


def _worker(banks: Path, tmp_path: Path, model_id: str = "tiny-random-bank") -> Worker:
    return Worker(DiffSinger, Settings(volume_root=banks, model_id=model_id, output_dir=tmp_path))


def _sing(worker: Worker, job_input: dict) -> np.ndarray:
    result = worker.run({"id": "j", "input": {"return_base64": True, "seed": 1, **job_input}})
    assert "error" not in result, result
    samples, rate = soundfile.read(io.BytesIO(_base64(result)), dtype="float32")
    assert rate == 44100
    return samples


def _base64(result: dict) -> bytes:
    import base64

    return base64.b64decode(result["outputs"][0]["base64"])


def test_segments_are_mixed_at_their_offsets(banks, tmp_path):
    worker = _worker(banks, tmp_path)
    song = _sing(worker, {"ds": [SEGMENT, SEGMENT | {"offset": 4.0}], "steps": 3})
    assert len(song) == round((4.0 + LENGTH) * 44100)
    first, gap, second = song[:88200], song[round(2.2 * 44100) : round(3.9 * 44100)], song[4 * 44100 :]
    assert np.abs(first).max() > 0.01 and np.abs(second).max() > 0.01
    assert np.abs(gap).max() == 0.0  # nothing sings between the segments
    alone = _sing(worker, {"ds": SEGMENT, "steps": 3})
    assert np.array_equal(song[: len(alone)], alone)  # the job's first segment draws the same noise
    later = _sing(worker, {"ds": [SEGMENT, SEGMENT | {"offset": 5.0}], "steps": 3})
    assert np.array_equal(later[5 * 44100 :], second)  # the same second segment, moved


def test_voice_controls_change_the_voice_and_seeds_repeat(banks, tmp_path):
    worker = _worker(banks, tmp_path)
    base = {"ds": SEGMENT, "steps": 3}
    alto = _sing(worker, base | {"speaker": "tiny.alto"})
    assert np.array_equal(alto, _sing(worker, base | {"speaker": "tiny.alto"}))
    assert np.array_equal(alto, _sing(worker, base))  # the first speaker is the default
    tenor = _sing(worker, base | {"speaker": "tiny.tenor"})
    mixed = _sing(worker, base | {"speaker_mix": {"tiny.alto": 0.5, "tiny.tenor": 0.5}})
    shifted = _sing(worker, base | {"key_shift": 5.0})
    assert np.array_equal(shifted, _sing(worker, base | {"gender": 1.0}))  # the top of the range, both ways
    for other in (tenor, mixed, shifted):
        assert not np.allclose(alto, other)
    assert not np.allclose(tenor, mixed)


def test_a_seed_repeats_its_audio_whatever_ran_before(banks, tmp_path):
    # The tiny bank's samplers draw noise inside their graphs (RandomNormalLike), as real exports do.
    worker = _worker(banks, tmp_path)
    job = {"ds": SEGMENT, "steps": 3}
    first = _sing(worker, job | {"seed": 5})
    other = _sing(worker, job | {"seed": 6})  # another job, another seed, in between
    assert np.array_equal(first, _sing(worker, job | {"seed": 5}))
    assert np.array_equal(first, _sing(_worker(banks, tmp_path), job | {"seed": 5}))  # a new worker's first job
    assert not np.allclose(first, other)
    lyrics = {"lyrics": "la la", "notes": [{"pitch": "C4", "duration": 0.5}] * 2, "steps": 2}
    sung = _sing(worker, lyrics | {"seed": 5})  # the duration and pitch models too
    _sing(worker, job | {"seed": 6})
    assert np.array_equal(sung, _sing(worker, lyrics | {"seed": 5}))


def test_unvoiced_frames_reach_the_variance_model_interpolated(banks, tmp_path, monkeypatch):
    feeds: dict[str, dict] = {}
    run = Graph.run

    def recording(self, available):
        feeds[self.name] = available
        return run(self, available)

    monkeypatch.setattr(Graph, "run", recording)
    worker = _worker(banks, tmp_path)
    frame = 512 / 44100  # the tiny bank's frame on every grid
    # Unvoiced (0 Hz) at both ends and between C4 (MIDI 60) and A4 (MIDI 69), as a pitch extractor writes it.
    f0 = [0.0] * 20 + [261.6256] * 50 + [0.0] * 40 + [440.0] * 60 + [0.0] * 30
    score = SEGMENT | {"f0_seq": " ".join(map(str, f0)), "f0_timestep": frame}
    _sing(worker, {"ds": score, "steps": 2})
    pitch = feeds["variance"]["pitch"][0]
    expected = np.concatenate([np.full(70, 60.0), np.linspace(60, 69, 42)[1:-1], np.full(90, 69.0)])[: pitch.size]
    np.testing.assert_allclose(pitch, expected, atol=1e-3)  # linear in log frequency; the ends hold
    acoustic_f0 = feeds["acoustic"]["f0"][0]  # the acoustic model and vocoder get the curve as given
    assert (acoustic_f0[:20] == 0).all() and (acoustic_f0[71:109] == 0).all()
    assert "pitch" not in feeds  # the score's pitch: no prediction
    silent = SEGMENT | {"f0_seq": "0 0 0", "f0_timestep": frame}
    _sing(worker, {"ds": silent, "steps": 2})
    assert (feeds["variance"]["pitch"] == 60.0).all()  # all unvoiced: C4, as DiffSinger fills all-rest notes


def test_ph_num_gives_a_word_to_each_note_that_is_not_a_slur():
    slurred = SEGMENT | {"note_slur": "0 0 1 0 0", "ph_num": "2 4 3 1"}  # E4 continues the word on C4
    DsSegment.model_validate(slurred)
    with pytest.raises(ValueError, match="ph_num\n  5 words for the 4 notes that start one"):
        DsSegment.model_validate(slurred | {"ph_num": "2 2 2 3 1"})


def test_a_score_with_its_pitch_and_curves_needs_no_prediction(banks, tmp_path):
    worker = _worker(banks, tmp_path)
    frames = 200
    fixed = SEGMENT | {
        "f0_seq": " ".join(["261.6"] * frames),
        "f0_timestep": "0.011609977",
        "energy": " ".join(["-30"] * frames),
        "energy_timestep": 0.011609977,
        "breathiness": " ".join(["-50"] * frames),
        "breathiness_timestep": 0.011609977,
    }
    sung = _sing(worker, {"ds": fixed, "steps": 2})
    assert len(sung) == round(LENGTH * 44100) and np.abs(sung).max() > 0.01
    assert not np.allclose(sung, _sing(worker, {"ds": SEGMENT, "steps": 2}))


def test_the_legacy_bank_sings(banks, tmp_path):
    worker = _worker(banks, tmp_path, "tiny-random-legacy")
    legacy = SEGMENT | {"ph_seq": SEGMENT["ph_seq"].replace("en/", "")}
    sung = _sing(worker, {"ds": legacy, "steps": 5, "depth": 0.3})
    assert np.abs(sung).max() > 0.01
    error = worker.run({"id": "s", "input": {"ds": legacy, "speaker": "tiny.alto"}})["error"]
    assert error == "speaker: this bank has a single voice"
    error = worker.run({"id": "k", "input": {"ds": legacy, "key_shift": 2.0}})["error"]
    assert error == "key_shift: this bank has no key-shift embedding; leave key_shift unset"


LONG_SEGMENT = SEGMENT | {"ph_dur": SEGMENT["ph_dur"].replace("0.3", "300", 1)}  # 301.78 s
BAD_INPUTS = [
    ({"ds": SEGMENT | {"ph_seq": SEGMENT["ph_seq"].replace("en/ow", "en/zz")}}, "ds.0.ph_seq: en/zz not in this bank"),
    (
        {"ds": [SEGMENT, {"ph_seq": "SP qq SP", "ph_dur": "1 1 1", "ph_num": "3", "note_seq": "C4", "note_dur": "3"}]},
        "ds.1.ph_seq: qq",
    ),
    (
        {"ds": SEGMENT | {"ph_num": "2 2 2 4"}},  # the words of 4 notes, on 5 notes that are not slurs
        "ds.0.ph_num: 4 words for the 5 notes that start one: a word per note whose note_slur is 0",
    ),
    ({"ds": SEGMENT | {"note_slur": "0 0 2 0 0"}}, "ds.0.note_slur: 0 or 1 per note"),
    ({"ds": SEGMENT | {"ph_num": "2 2 2 3"}}, "ds.0.ph_num: positive whole numbers summing to the 10 phonemes"),
    ({"ds": SEGMENT | {"note_dur": "0.38 0.4 0.5"}}, "ds.0.note_dur: 3 values for the 5 notes of note_seq"),
    ({"ds": SEGMENT | {"ph_dur": "0.3 0.08"}}, "ds.0.ph_dur: 2 durations for the 10 phonemes of ph_seq"),
    ({"ds": SEGMENT | {"note_seq": "rest C4 E4 H4 rest"}}, "ds.0.note_seq: 'H4' is not a note name"),
    ({"ds": SEGMENT | {"f0_seq": "220 220"}}, "ds.0.f0_timestep: required with a f0 curve"),
    (
        {"ds": SEGMENT, "speaker": "bass"},
        "speaker: bass is not a speaker of this bank (speakers: tiny.alto, tiny.tenor)",
    ),
    ({"ds": SEGMENT, "speaker_mix": {"tiny.alto": 0.5, "soprano": 0.5}}, "speaker_mix: soprano is not a speaker"),
    ({"ds": SEGMENT, "speaker": "tiny.alto", "speaker_mix": {"tiny.alto": 1}}, "speaker and speaker_mix: give one"),
    ({"ds": SEGMENT, "key_shift": 7}, "key_shift: 7 is outside this bank's range -5..5 semitones"),
    (
        {"ds": SEGMENT | {"offset": 700}},
        "ds: the song sings 702.08 s, over this endpoint's 600 s (DIFFSINGER_MAX_SECONDS)",
    ),
    ({"ds": [LONG_SEGMENT, LONG_SEGMENT]}, "ds: the song sings 603.56 s"),  # a 301.78 s song, sung twice over
    ({"ds": SEGMENT | {"note_dur": "0.38 1e30 0.5 0.5 0.3"}}, "ds: the song sings 1e+30 s"),
    ({"ds": SEGMENT | {"note_dur": "0.38 -0.4 0.5 0.5 0.3"}}, "ds.0.note_dur: a negative duration"),
    ({"ds": SEGMENT | {"ph_dur": " ".join(["0"] * 10)}}, "ds.0.ph_dur: the phonemes last 0 s"),
    ({"ds": SEGMENT | {"f0_seq": "220 1e39", "f0_timestep": 0.01}}, "ds.0.f0_seq: NaN, infinity, or a number beyond"),
    ({"ds": SEGMENT | {"f0_seq": "220 20000", "f0_timestep": 0.01}}, "ds.0.f0_seq: Hz from 0 to 12543.9 (G9"),
    ({"ds": SEGMENT | {"energy": "-30 1e39", "energy_timestep": 0.01}}, "ds.0.energy: NaN, infinity, or a number"),
    ({"ds": SEGMENT | {"gender": "1e39"}}, "ds.0.gender: NaN, infinity, or a number beyond float32's range"),
    ({"ds": SEGMENT | {"note_seq": "rest C4 E4 C999 rest"}}, "ds.0.note_seq: 'C999' is outside MIDI 0..127"),
    ({"ds": SEGMENT | {"spk_mix": {"tiny.alto": 5}}}, "ds.0.spk_mix.tiny.alto: Input should be less than or equal"),
    ({"ds": SEGMENT | {"spk_mix": {"tiny.alto": 0}}}, "ds.0.spk_mix: at least one weight above 0"),
    ({"ds": SEGMENT | {"spk_mix": {"soprano": 1}}}, "ds.0.spk_mix: soprano is not a speaker of this bank"),
    ({"ds": SEGMENT, "steps": 0}, "steps"),
    ({"ds": SEGMENT, "gender": 0.5, "key_shift": 1}, "gender and key_shift: the same control"),
]


@pytest.mark.parametrize(("job_input", "expected"), BAD_INPUTS)
def test_bad_input_is_refused_and_the_next_job_sings(banks, tmp_path, job_input, expected):
    worker = _worker(banks, tmp_path)
    error = worker.run({"id": "bad", "input": copy.deepcopy(job_input)})["error"]
    assert expected in error, error
    assert "outputs" in worker.run({"id": "good", "input": {"ds": SEGMENT, "steps": 2}})


LYRICS = {
    "lyrics": "hello + world",
    "notes": [
        {"pitch": "C4", "duration": 1},
        {"pitch": "D4", "duration": 1},
        {"pitch": "rest", "duration": 0.5},
        {"pitch": 64, "duration": 1},
    ],
    "bpm": 120,
    "steps": 3,
}


def test_each_vowel_starts_on_its_note_phrase_by_phrase(banks, tmp_path):
    worker = _worker(banks, tmp_path)
    worker.start()
    adapter = worker.cache._model
    first, second = adapter._sung(
        DiffSinger.request_model.model_validate(LYRICS), {}, StopSignal()
    )  # the rest splits them
    # Lead-in 0.5 s; at 120 bpm: C4 0.5-1.0 (ah), D4 1.0-1.5 (ow, carried by +), rest, E4 1.75-2.25.
    assert first.phonemes == ["SP", "en/hh", "en/ah", "en/l", "en/ow", "SP"] and first.words == [2, 2, 1, 1]
    assert second.phonemes == ["SP", "en/w", "en/er", "en/l", "en/d", "SP"] and second.offset == 1.25
    starts = {}
    for segment in (first, second):
        onsets = segment.offset + np.cumsum([0.0, *segment.durations[:-1]])
        starts |= dict(zip(segment.phonemes, onsets, strict=True))
    assert starts["en/ah"] == pytest.approx(0.5) and starts["en/ow"] == pytest.approx(1.0)
    assert starts["en/er"] == pytest.approx(1.75)
    assert 0.5 > starts["en/hh"] > 0 and 1.75 > starts["en/w"] > 1.5  # consonants sung before their vowel
    assert second.offset + sum(second.durations) == pytest.approx(2.25 + 0.3)
    sung = _sing(worker, LYRICS)
    assert len(sung) == round(2.55 * 44100) and np.abs(sung[round(0.6 * 44100) : 88200]).max() > 0.01


def test_text_alone_is_sung_on_the_default_melody(banks, tmp_path):
    worker = _worker(banks, tmp_path)
    result = worker.run({"id": "seed", "input": {"model": "diffsinger", "text": "Hello"}})  # the seed's request
    assert result["details"]["phonemes"] == "SP en/hh en/ah en/l en/ow SP"  # one phrase
    assert result["outputs"][0]["duration_seconds"] == pytest.approx(0.5 + 1.0 + 0.3)  # two beats at 120 bpm
    lower = _sing(worker, {"text": "hello world", "key": "C3", "steps": 2})
    assert not np.allclose(lower, _sing(worker, {"text": "hello world", "key": "C4", "steps": 2}))


def test_lyrics_need_the_banks_timing_model(tiny_volume, tmp_path):
    bank = tmp_path / "diffsinger" / "voicebanks" / "no-dur"
    shutil.copytree(tiny_volume.ensure("diffsinger") / "diffsinger" / "voicebanks" / "tiny-random-bank", bank)
    shutil.rmtree(bank / "dsdur")
    worker = _worker(tmp_path, tmp_path, "no-dur")
    assert worker.run({"id": "l", "input": LYRICS})["error"] == (
        "lyrics: this bank has no timing model (dsdur/, or dur in its dsconfig.yaml) to place phonemes "
        "on notes; send a .ds score with every phoneme's duration"
    )
    assert "outputs" in worker.run({"id": "d", "input": {"ds": SEGMENT, "steps": 2}})


def test_a_bank_without_dsdur_times_lyrics_with_the_models_in_its_root(bank_copy, tmp_path):
    move_timing_to_root(bank_copy)
    result = _worker(tmp_path, tmp_path, "copy").run({"id": "l", "input": LYRICS})
    assert result["details"]["phonemes"] == "SP en/hh en/ah en/l en/ow SP | SP en/w en/er en/l en/d SP"
    assert result["outputs"][0]["duration_seconds"] == pytest.approx(2.25 + 0.3)


@pytest.mark.parametrize("broken", ["entries: [unclosed", ""], ids=["malformed", "empty"])
def test_a_broken_language_dictionary_disables_that_language_alone(bank_copy, tmp_path, broken):
    write_language_dictionary(bank_copy / "dsdur", "ja", JAPANESE_WORDS)
    broken_dictionary = bank_copy / "dsdur" / "dsdict-en.yaml"
    broken_dictionary.write_text(broken)
    warned: list[str] = []
    sink = logger.add(lambda message: warned.append(message.record["message"]), level="WARNING")
    try:
        worker = _worker(tmp_path, tmp_path, "copy")
        worker.start()
    finally:
        logger.remove(sink)
    assert any(line.startswith(f"language en disabled: {broken_dictionary}: ") for line in warned), warned
    error = worker.run({"id": "en", "input": LYRICS | {"language": "en"}})["error"]
    assert error.startswith(f"language: en is disabled: its dictionary failed to load ({broken_dictionary}: ")
    japanese = LYRICS | {"lyrics": "sakana + neko"}
    sung = "SP ja/s ja/a ja/k ja/a ja/n ja/a SP | SP ja/n ja/e ja/k ja/o SP"
    assert worker.run({"id": "ja", "input": japanese | {"language": "ja"}})["details"]["phonemes"] == sung
    assert worker.run({"id": "default", "input": japanese})["details"]["phonemes"] == sung  # the first that serves
    assert "outputs" in worker.run({"id": "ds", "input": {"ds": SEGMENT, "steps": 2}})


def test_words_spell_their_phonemes_in_brackets_as_in_openutau(banks, tmp_path):
    worker = _worker(banks, tmp_path)
    assert np.array_equal(_sing(worker, LYRICS | {"lyrics": "[hh ah l ow] + world"}), _sing(worker, LYRICS))
    spelled = LYRICS | {"lyrics": "hello + tide[t ay d]"}  # not in the dictionary, or spelled otherwise
    assert worker.run({"id": "s", "input": spelled})["details"]["phonemes"].endswith("| SP en/t en/ay en/d SP")
    # Prefixed as spelled, else by the language; a word that is itself a phoneme is sung as that phoneme.
    result = worker.run({"id": "t", "input": {"text": "ah [en/hh ay] [ja/k ja/a]", "steps": 2}})
    assert result["details"]["phonemes"] == "SP en/ah en/hh en/ay ja/k ja/a SP"
    result = worker.run({"id": "j", "input": {"text": "[k a]", "language": "ja", "steps": 2}})
    assert result["details"]["phonemes"] == "SP ja/k ja/a SP"


SUNG_BAD_INPUTS = [
    (
        {"text": "hello xyzzy"},
        "text: 'xyzzy' is not in this bank's dictionary; spell its phonemes in brackets: xyzzy[ph ph]",
    ),
    ({"text": "tide[t ay zz]"}, "text: 'tide[t ay zz]' spells zz, which is not one of this bank's phonemes"),
    (LYRICS | {"lyrics": "hello + [w er l"}, "lyrics: a [ without its ] or a ] without its ["),
    ({"text": "a[ah][ah]"}, "text: 'a[ah][ah]' spells its phonemes twice; one [...] per word"),
    (LYRICS | {"lyrics": "hello + moon"}, "lyrics: 'moon' is not in this bank's dictionary"),
    (LYRICS | {"language": "fr"}, "language: fr is not one of this bank's (en, ja)"),
    (LYRICS | {"lyrics": "hello world"}, "lyrics: 2 words for 3 sung notes (rests take no word)"),
    (LYRICS | {"notes": [{"pitch": "Q4", "duration": 1}]}, "'Q4' is not a note name"),
    ({"text": "hello", "ds": SEGMENT}, "ds, lyrics (with notes) or text: give exactly one of them"),
    # One beat a word at 120 bpm, the last two, with the lead-in and tail: 1299 * 0.5 + 1 + 0.8 s.
    ({"text": "la " * 1300}, "text: the song sings 651.3 s, over this endpoint's 600 s (DIFFSINGER_MAX_SECONDS)"),
    # No space, one "word" by lyrics' rules, but 3333 words and 3332 rests of the melody: 3 + 1.5 s each at 20 bpm.
    ({"text": "la," * 3333, "bpm": 20}, "text: the song sings 15000.8 s, over this endpoint's 600 s"),
    # Ten notes of 59.95 s: 599.5 s of notes, over the cap with the lead-in and tail.
    (
        {"lyrics": "la " * 10, "notes": [{"pitch": "C4", "duration": 59.95}] * 10},
        "lyrics: the song sings 600.3 s, over this endpoint's 600 s",
    ),
    (
        LYRICS | {"lyrics": "hello + +"},
        "lyrics: + carries the previous word onto its note, so it cannot come first or after a rest",
    ),
]


@pytest.mark.parametrize(("job_input", "expected"), SUNG_BAD_INPUTS)
def test_bad_lyrics_are_refused_and_the_next_job_sings(banks, tmp_path, job_input, expected):
    worker = _worker(banks, tmp_path)
    error = worker.run({"id": "bad", "input": copy.deepcopy(job_input)})["error"]
    assert expected in error, error
    assert "outputs" in worker.run({"id": "good", "input": LYRICS})


def test_a_score_without_word_boundaries_takes_them_from_its_vowels(banks, tmp_path):
    worker = _worker(banks, tmp_path)
    without = {key: value for key, value in SEGMENT.items() if key != "ph_num"}
    sung = _sing(worker, {"ds": without, "steps": 2})
    assert len(sung) == round(LENGTH * 44100) and np.abs(sung).max() > 0.01


def test_a_cancelled_job_stops_inside_a_loop_over_the_notes(banks, tmp_path):
    worker = _worker(banks, tmp_path)
    many_notes = {
        "ph_seq": "SP en/ah SP",
        "ph_dur": "0.1 19.8 0.1",
        "note_seq": " ".join(["C4", "rest"] * 1000),
        "note_dur": " ".join(["0.01"] * 2000),
    }
    # The first check is the segment's, then one per note where the rests take their neighbours' pitch.
    stop = CountedStop(stop_at=1 + 1000)
    assert worker.run({"id": "c", "input": {"ds": many_notes, "steps": 2}}, stop=stop) == {"error": "job cancelled"}
    assert stop.checks == 1001 and stop.steps == 1  # stopped at that note, before the pitch model's step
    assert "outputs" in worker.run({"id": "good", "input": {"ds": SEGMENT, "steps": 2}})
