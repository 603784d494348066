"""Stopping a job that RunPod cancelled or timed out, at the model's next natural step.

RunPod's /cancel and the execution timeout cancel the job's asyncio task; generation runs in a thread,
which a task cancellation does not reach. The handler sets the job's `StopSignal`; the adapter calls
`step()` at each natural step (a decoding step, a patch, a diffusion step), which raises `JobCancelled`
once the stop is requested, so the generation ends within one step.
"""

from __future__ import annotations

import threading
from typing import Any


class JobCancelled(Exception):  # noqa: N818 (not an error: the platform asked for it)
    """The job was cancelled; `steps_after` steps began after the request (the one that noticed included)."""

    def __init__(self, steps: int, steps_after: int) -> None:
        super().__init__(f"cancelled after {steps} step(s), {steps_after} after the request")
        self.steps = steps
        self.steps_after = steps_after


class StopSignal:
    """One job's stop request, set from the event loop and read by the generation thread."""

    def __init__(self) -> None:
        self._requested = threading.Event()
        self._lock = threading.Lock()
        self.steps = 0
        self._steps_at_request = 0

    def request(self) -> None:
        with self._lock:
            if not self._requested.is_set():
                self._steps_at_request = self.steps
                self._requested.set()

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def step(self) -> None:
        """Count one step of generation; raise JobCancelled if the job was cancelled."""
        with self._lock:
            self.steps += 1
            if self._requested.is_set():
                raise JobCancelled(self.steps, self.steps - self._steps_at_request)

    def stopping_criteria(self) -> Any:
        """For transformers' `generate`: called after every decoding step."""
        return BatchStop([self]).stopping_criteria()

    def before_each_call(self, module: Any) -> Any:
        """For a torch module that runs once per step: a forward pre-hook; remove the returned handle after."""
        return module.register_forward_pre_hook(lambda _module, _args: self.step())


class BatchStop:
    """The stops of a batch's jobs, for transformers' `generate`: a cancelled job drops out (its outcome is
    its `JobCancelled`) while the others run on; the generation ends when every job is cancelled."""

    def __init__(self, signals: list[StopSignal]) -> None:
        self._signals = signals
        self.cancelled: dict[int, JobCancelled] = {}  # job index -> how it was cancelled

    def step(self) -> None:
        """Count one step for every running job; raise the last cancellation once no job is left."""
        for index, signal in enumerate(self._signals):
            if index in self.cancelled:
                continue
            try:
                signal.step()
            except JobCancelled as exc:
                self.cancelled[index] = exc
                if len(self.cancelled) == len(self._signals):
                    raise

    def stopping_criteria(self) -> Any:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        batch = self

        class _StopWhenAllCancelled(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
                batch.step()
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        return StoppingCriteriaList([_StopWhenAllCancelled()])
