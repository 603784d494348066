"""Concurrent jobs grouped into one generation: the micro-batcher between the jobs' threads and the model.

With MAX_CONCURRENCY > 1 RunPod hands the worker several jobs at once, each in its own thread. Each job
`submit`s its work with the adapter's batch key (None: it batches with nothing). One batch generates at a
time: the thread that finds the model free becomes the batch's leader, waits up to BATCH_WINDOW_MS after
its own job arrived for compatible jobs (same key) to join, takes them (in arrival order, up to
BATCH_MAX_OUTPUTS outputs and MAX_CONCURRENCY jobs), runs them as one call and hands each job its own
outcome. Jobs that queued while the model was busy join the next batch without waiting any longer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

ItemT = TypeVar("ItemT")


@dataclass(eq=False)
class Entry(Generic[ItemT]):
    """One job's work in the batcher; its outcome is a result or the exception the job answers with."""

    item: ItemT
    key: Hashable | None
    outputs: int
    arrived: float = field(default_factory=time.monotonic)
    outcome: Any = None
    done: bool = False


class MicroBatcher(Generic[ItemT]):
    def __init__(
        self,
        run_batch: Callable[[list[ItemT]], list[Any]],
        window_s: float,
        max_jobs: int,
        max_outputs: int,
    ) -> None:
        self._run_batch = run_batch  # items -> one outcome per item (a result, or an exception to raise)
        self._window_s = window_s if max_jobs > 1 else 0.0  # alone, nobody can join: no wait
        self._max_jobs = max_jobs
        self._max_outputs = max_outputs
        self._changed = threading.Condition()
        self._pending: list[Entry[ItemT]] = []
        self._busy = False

    def submit(self, item: ItemT, key: Hashable | None, outputs: int) -> Any:
        """Run `item`, batched with compatible items when they come; its outcome, or raise its exception."""
        entry = Entry(item, key, outputs)
        with self._changed:
            self._pending.append(entry)
            self._changed.notify_all()
            while self._busy and not entry.done:
                self._changed.wait()
            if not entry.done:
                self._busy = True
                batch = self._gather(entry)
        if not entry.done:
            self._lead(batch)
        if isinstance(entry.outcome, BaseException):
            raise entry.outcome
        return entry.outcome

    def _companions(self, leader: Entry[ItemT]) -> list[Entry[ItemT]]:
        """The leader first, then compatible pending entries in arrival order, within the limits."""
        batch, outputs = [leader], leader.outputs
        for entry in self._pending:
            if len(batch) == self._max_jobs:
                break
            if entry is leader or leader.key is None or entry.key != leader.key:
                continue
            if outputs + entry.outputs <= self._max_outputs:
                batch.append(entry)
                outputs += entry.outputs
        return batch

    def _full(self, batch: list[Entry[ItemT]]) -> bool:
        return len(batch) == self._max_jobs or sum(entry.outputs for entry in batch) >= self._max_outputs

    def _gather(self, leader: Entry[ItemT]) -> list[Entry[ItemT]]:
        """Wait (holding the turn) until the window closes or the batch is full; take its entries."""
        deadline = leader.arrived + self._window_s
        while leader.key is not None and not self._full(self._companions(leader)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._changed.wait(remaining)
        batch = self._companions(leader)
        for entry in batch:
            self._pending.remove(entry)
        return batch

    def _lead(self, batch: list[Entry[ItemT]]) -> None:
        try:
            outcomes = self._run_batch([entry.item for entry in batch])
        except BaseException as exc:  # the whole call failed: every job answers with it
            outcomes = [exc] * len(batch)
        with self._changed:
            for entry, outcome in zip(batch, outcomes, strict=True):
                entry.outcome, entry.done = outcome, True
            self._busy = False
            self._changed.notify_all()
