"""Tiny and bench-size DiffSinger voicebanks (random-weight ONNX graphs with the real I/O, in OpenUtau's
layout; see tiny_bank.py) and the worker's contract.

Built into <volume>/diffsinger/voicebanks/<MODEL_ID>, where the worker resolves MODEL_ID, so tests and the
demo read them through the production code.
"""

from __future__ import annotations

import json
from pathlib import Path

from handlers.diffsinger.tiny_bank import build_bank, build_legacy_bank
from shared.testing import ContractCase, TinyModel

TINY_MODELS = (
    TinyModel("tiny-random-bank", build_bank),
    # Its phonemes carry no language prefix: the contract's job is for the multilingual bank.
    TinyModel("tiny-random-legacy", build_legacy_bank, serves_contract=False),
)

_JOB = json.loads((Path(__file__).with_name("test_input.json")).read_text())["input"]
_SEGMENT = _JOB["ds"]


def long_score(segments: int, repeats: int) -> list[dict]:
    """Segments one after another, each the test phrase sung `repeats` times: a job of many graph runs
    (cancellation lands between them), under the default DIFFSINGER_MAX_SECONDS."""
    sequences = ("ph_seq", "ph_dur", "ph_num", "note_seq", "note_dur", "note_slur")
    phrase = {key: " ".join([_SEGMENT[key]] * repeats) for key in sequences}
    length = repeats * sum(float(value) for value in _SEGMENT["ph_dur"].split())
    return [_SEGMENT | phrase | {"offset": round(number * length, 3)} for number in range(segments)]


CONTRACT = ContractCase(
    job_input={"ds": _SEGMENT, "steps": 4},
    output_count=1,
    locked={"steps": 3},
    bad_value=("steps", 0, "steps"),
    bad_variable=("DIFFSINGER_MAX_SECONDS", "-5", "DIFFSINGER_MAX_SECONDS"),
    long_job_input={"ds": long_score(140, 2), "steps": 100},
    fuzz_locks={"steps": 1},
)
