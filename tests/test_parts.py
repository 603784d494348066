"""Residency.SEQUENTIAL's phase plan (shared/parts.py): what is placed where, and what is freed when."""

from __future__ import annotations

import pytest
import torch

from shared.memory import PhaseLog
from shared.parts import Part, Parts, home_device
from shared.settings import Residency
from shared.torch_runtime import RUNTIME

pytestmark = pytest.mark.unit
CPU = torch.device("cpu")


def _parts(residency: Residency, released: list[str]) -> Parts:
    return Parts(
        {name: Part(torch.nn.Linear(2, 2), lambda name=name: released.append(name)) for name in ("lm", "codec")},
        CPU,
        CPU,
        residency,
        RUNTIME,
    )


def _job(parts: Parts, log: PhaseLog, fail_in: str | None = None) -> None:
    with parts.job(log) as phase:
        with phase("generate", "lm") as lm:
            assert isinstance(lm, torch.nn.Linear)
            if fail_in == "generate":
                raise RuntimeError("boom")
        with phase("decode", "codec"):
            pass


def test_sequential_holds_one_part_at_a_time_and_none_between_jobs():
    released: list[str] = []
    parts = _parts(Residency.SEQUENTIAL, released)
    assert parts.on_device == []
    log = PhaseLog(RUNTIME)
    _job(parts, log)
    assert [(record["phase"], record.get("part"), record.get("on_device")) for record in log.records] == [
        ("place", "lm", ["lm"]),
        ("generate", "lm", None),
        ("place", "codec", ["codec"]),
        ("decode", "codec", None),
        ("cleanup", None, []),
    ]
    assert parts.on_device == []
    assert all(record["before_mib"] > 0 and record["after_mib"] > 0 for record in log.records)


def test_keep_leaves_every_part_on_the_device():
    parts = _parts(Residency.KEEP, [])
    log = PhaseLog(RUNTIME)
    _job(parts, log)
    assert [record["on_device"] for record in log.records if "on_device" in record] == [["lm", "codec"]] * 3


def test_state_is_freed_before_each_phase_after_it_and_at_the_end_even_on_error():
    released: list[str] = []
    parts = _parts(Residency.SEQUENTIAL, released)
    log = PhaseLog(RUNTIME)
    with pytest.raises(RuntimeError, match="boom"):
        _job(parts, log, fail_in="generate")
    # place: both parts' leftovers; the failed phase: its own; cleanup: both again.
    assert released == ["lm", "codec", "lm", "lm", "codec"]
    assert [record["phase"] for record in log.records] == ["place", "generate", "cleanup"]
    assert parts.on_device == []


@pytest.mark.parametrize(
    ("residency", "expected"),
    [(Residency.SEQUENTIAL, "cpu"), (Residency.KEEP, "cuda"), (Residency.UNLOAD, "cuda")],
)
def test_parts_load_where_they_wait(residency, expected):
    assert home_device(residency, "cuda", "cpu") == expected
