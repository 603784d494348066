"""Filling rests with their neighbours' pitch: the old quadratic rule's results in one pass over the notes,
a cancellation point at every note; and what a rest may be written as."""

from __future__ import annotations

import random

import pytest

from handlers.diffsinger.runner import _fill_rests
from handlers.diffsinger.schema import NoteSpec
from shared.stop import JobCancelled, StopSignal

pytestmark = pytest.mark.unit


class CountedStop(StopSignal):
    """A stop that counts how often loops check it, and is requested at the `stop_at`-th check."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.checks = 0

    @property
    def requested(self) -> bool:
        self.checks += 1
        if self.checks == self.stop_at:
            self.request()
        return super().requested


def quadratic_fill_rests(midi: list[float | None]) -> list[float]:
    """The rule as it was first written: each rest searches every note for its nearest neighbours."""
    known = [index for index, value in enumerate(midi) if value is not None]
    if not known:
        return [60.0] * len(midi)
    filled = []
    for index, value in enumerate(midi):
        if value is not None:
            filled.append(value)
            continue
        left = max((k for k in known if k < index), default=None)
        right = min((k for k in known if k > index), default=None)
        if left is None or (right is not None and index - left > right - index):
            filled.append(midi[right])
        else:
            filled.append(midi[left])
    return filled


def test_rests_are_filled_as_before_in_one_pass_with_one_check_per_note():
    generator = random.Random(7)
    for _ in range(500):
        rest_share = generator.random()
        midi = [None if generator.random() < rest_share else generator.uniform(40, 80) for _ in range(30)]
        stop = CountedStop()
        # A one-shot iterator: the notes can be read once, in order, so the work is one pass.
        assert _fill_rests(iter(midi), stop) == quadratic_fill_rests(midi), midi
        assert stop.checks == len(midi)


def test_a_cancelled_job_stops_inside_the_loop():
    stop = CountedStop(stop_at=5000)
    with pytest.raises(JobCancelled):
        _fill_rests([None, 60.0] * 5000, stop)
    assert stop.checks == 5000  # at the note where the stop came, half-way through
    assert stop.steps == 1  # the cancellation alone: no step is counted per note


def test_a_null_pitch_is_a_rest_as_the_schema_says():
    assert NoteSpec(pitch=None, duration=1) == NoteSpec(pitch="rest", duration=1)
    accepted = {branch.get("type") for branch in NoteSpec.model_json_schema()["properties"]["pitch"]["anyOf"]}
    assert accepted == {"string", "number", "null"}
