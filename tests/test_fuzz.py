"""Generated requests against every worker: each gets a result or an error string, never an internal error.

Inputs come from the request schema: each field is left out, given the contract job's value, or given
any JSON value (wrong types, NaN, huge numbers, odd strings), plus unknown keys. The operator locks of
the worker's contract (`fuzz_locks`) keep every accepted job cheap, as LOCKED_PARAMETERS would.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import workers
from shared.pipeline import Worker
from shared.settings import Settings

pytestmark = pytest.mark.tiny

WORKERS = workers.worker_names()
EXAMPLES = 25

# Strings the probe found trouble with, mixed into the random ones.
TRICKY = ("data:", "data:audio/wav;base64", "data:,", "\u0000", "", "   ", "../x", "s3://audio-results/in.wav",
          "http://user:pass@127.0.0.1/a.wav", "https://[::7f00:1]/a.wav", "QUJD", "demo_voice")  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(TRICKY),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def requests_for(worker: str) -> st.SearchStrategy[Any]:
    case = workers.module(worker, "fixtures").CONTRACT
    fields = workers.adapter_class(worker).request_model.model_fields
    examples = case.job_input | case.long_job_input
    optional = {name: (st.just(examples[name]) | json_values) if name in examples else json_values for name in fields}
    generated = st.fixed_dictionaries({}, optional=optional)
    unknown = st.dictionaries(st.text(max_size=10).filter(lambda key: key not in fields), json_values, max_size=2)
    base = st.sampled_from([case.job_input, {}])
    as_object = st.builds(lambda start, fields, extra: start | fields | extra, base, generated, unknown)
    return as_object | json_values  # now and then not even an object


@functools.cache
def fuzz_worker(worker: str, volume: Path) -> Worker:
    case = workers.module(worker, "fixtures").CONTRACT
    settings = Settings(
        volume_root=volume,
        model_id=workers.module(worker, "fixtures").TINY_MODELS[0].model_id,
        output_dir=Path(tempfile.mkdtemp(prefix="fuzz-")),
        locked_parameters=case.fuzz_locks,
    )
    return Worker(workers.adapter_class(worker), settings)


@pytest.mark.parametrize("worker", WORKERS)
def test_every_generated_request_gets_a_result_or_a_clear_error(tiny_volume, worker):
    started = fuzz_worker(worker, tiny_volume.ensure(worker))

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(requests_for(worker))
    def check(raw: Any) -> None:
        result = started.run({"id": "fuzz", "input": raw})
        if "error" in result:
            assert isinstance(result["error"], str) and result["error"]
            assert not result["error"].startswith("internal error"), (raw, result["error"])
        else:
            assert isinstance(result["outputs"], list)

    check()


# DiffSinger: the three forms it sings (a .ds score, lyrics on notes, text alone), from the tiny bank's words
# and phonemes, sized around a small length cap that every accepted job must keep to, as rendered.
DIFFSINGER_CAP = 8.0
DIFFSINGER_EXAMPLES = 60
TEXT_SEPARATORS = (" ", ", ", ",", ". ", "! ", " ; ")  # punctuation rests in the default melody


@st.composite
def diffsinger_request(draw: st.DrawFn) -> dict[str, Any]:
    """The contract's phrase retimed in up to four segments, lyrics on notes, or text, some over the cap."""
    from handlers.diffsinger.fixtures import CONTRACT
    from handlers.diffsinger.tiny_bank import WORDS

    form = draw(st.sampled_from(["ds", "lyrics", "text"]))
    if form == "ds":
        phrase = CONTRACT.job_input["ds"]

        def timed(field: str, longest: float) -> str:
            return " ".join(f"{draw(st.floats(0, longest)):g}" for _ in phrase[field].split())

        segments = draw(st.integers(1, 4))
        return {"ds": [phrase | {"ph_dur": timed("ph_dur", 1.5), "note_dur": timed("note_dur", 3),
                                 "offset": draw(st.floats(0, 6))} for _ in range(segments)]}  # fmt: skip
    tempo = draw(st.sampled_from([{}, {"bpm": 20}, {"bpm": 120}, {"bpm": 400}]))
    words = sorted(WORDS)
    if form == "text":
        pairs = draw(
            st.lists(st.tuples(st.sampled_from(words), st.sampled_from(TEXT_SEPARATORS)), min_size=1, max_size=12)
        )
        return {"text": "".join(word + separator for word, separator in pairs)} | tempo
    pitches = st.sampled_from(["C4", "E4", 67, "rest", None])
    notes = draw(
        st.lists(st.fixed_dictionaries({"pitch": pitches, "duration": st.floats(0.05, 3)}), min_size=1, max_size=10)
    )
    sung = sum(note["pitch"] not in ("rest", None) for note in notes)
    lyrics = draw(st.lists(st.sampled_from([*words, "+"]), min_size=sung, max_size=sung))
    return {"notes": notes, "lyrics": " ".join(lyrics)} | tempo


def test_diffsinger_sings_every_form_within_its_length_cap(tiny_volume, monkeypatch):
    from handlers.diffsinger.adapter import DiffSinger
    from handlers.diffsinger.config import DiffSingerConfig

    volume = tiny_volume.ensure("diffsinger")
    output_dir = Path(tempfile.mkdtemp(prefix="fuzz-"))
    locked = Settings(
        volume_root=volume, model_id="tiny-random-bank", output_dir=output_dir, locked_parameters={"steps": 1}
    )
    worker = Worker(DiffSinger, locked, DiffSingerConfig.model_validate({"DIFFSINGER_MAX_SECONDS": DIFFSINGER_CAP}))
    worker.start()
    synthesizer = worker.cache._model.synthesizer
    render = synthesizer.render
    sung_seconds: list[float] = []

    def counted_render(segment, controls, stop):
        sung_seconds.append(sum(segment.durations))
        return render(segment, controls, stop)

    monkeypatch.setattr(synthesizer, "render", counted_render)
    outcomes: set[tuple[str, str]] = set()

    @settings(
        max_examples=DIFFSINGER_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    @given(diffsinger_request())
    def check(raw: dict[str, Any]) -> None:
        form = next(name for name in ("ds", "lyrics", "text") if name in raw)
        sung_seconds.clear()
        result = worker.run({"id": "fuzz", "input": raw})
        if "error" in result:
            assert not result["error"].startswith("internal error"), (raw, result["error"])
            assert not sung_seconds, (raw, result["error"])  # refused before any segment was sung
            outcomes.add((form, "over the cap" if "DIFFSINGER_MAX_SECONDS" in result["error"] else "refused"))
        else:
            assert result["outputs"][0]["duration_seconds"] <= DIFFSINGER_CAP + 0.02, raw  # a frame of rounding
            assert sum(sung_seconds) <= DIFFSINGER_CAP + 1e-9, (raw, sung_seconds)
            outcomes.add((form, "sung"))

    check()
    for form in ("ds", "lyrics", "text"):
        assert {(form, "sung"), (form, "over the cap")} <= outcomes, outcomes
