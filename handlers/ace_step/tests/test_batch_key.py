"""Which ACE-Step requests share a pipeline call: takes of one song only."""

from __future__ import annotations

import pytest

from handlers.ace_step.adapter import AceStep
from handlers.ace_step.schema import AceStepRequest

pytestmark = pytest.mark.unit


def _key(**fields):
    return AceStep.batch_key(AceStepRequest(**({"caption": "lo-fi", "lyrics": "la"} | fields)))


def test_takes_of_one_song_batch_and_nothing_else_does():
    assert _key(seed=1, batch_size=1) == _key(seed=2, batch_size=2, format="mp3", s3_prefix="takes")
    for other in ({"caption": "metal"}, {"lyrics": "na"}, {"audio_duration": 12.0}, {"steps": 9}, {"bpm": 90}):
        assert _key(**other) != _key(), other
    assert _key(task="repaint", audio="https://example.com/a.wav", repainting_start=0.0, repainting_end=2.0) is None
