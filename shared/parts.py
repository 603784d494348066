"""A model made of parts (a language model, a codec...) placed by residency, phase by phase within a job.

Under Residency.SEQUENTIAL every part waits in CPU memory between jobs, and a job runs as phases that each
need one part on the GPU. Entering a phase frees what the previous job or phase left in the parts (KV
caches...), moves the parts that phase does not need back to CPU memory, hands their GPU memory back and
moves the needed part in; the job's end moves the last part out. So a GPU holds one part and its working
memory at a time. Under KEEP and UNLOAD the parts stay on the device and only the per-job state is freed.
Each placement is a phase of the job's PhaseLog: its memory before and after, and what is on the device.

    with parts.job(job.phases) as phase:
        with phase("generate", "lm") as lm:
            tokens = ...
        with phase("decode", "codec") as codec:
            audio = ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from shared.memory import PhaseLog, release_memory
from shared.runtime import Runtime
from shared.settings import Residency


@dataclass(frozen=True)
class Part:
    module: Any  # moved with .to(device) (a torch module)
    release: Callable[[], None] = lambda: None  # frees what a job left in it (KV caches); safe to call twice


def home_device(residency: Residency, device: Any, cpu: Any) -> Any:
    """Where parts are loaded and wait between phases: CPU memory under SEQUENTIAL, else the device."""
    return cpu if residency is Residency.SEQUENTIAL else device


class Parts:
    def __init__(self, parts: dict[str, Part], device: Any, cpu: Any, residency: Residency, runtime: Runtime) -> None:
        self._parts = parts
        self._device = device
        self._cpu = cpu
        self._sequential = residency is Residency.SEQUENTIAL
        self._runtime = runtime
        # What is on the device now: every part, or (SEQUENTIAL) the one whose phase ran last.
        self.on_device: list[str] = [] if self._sequential else list(parts)

    def __getitem__(self, name: str) -> Any:
        return self._parts[name].module

    @contextmanager
    def job(self, log: PhaseLog) -> Iterator[Callable[[str, str], AbstractContextManager[Any]]]:
        """One job: yields `phase(name, part)`, a context that runs a phase with that part on the device.
        At the job's end (success, error or cancel) every part's state is freed and, under SEQUENTIAL, every
        part is back in CPU memory."""
        try:
            yield partial(self._phase, log)
        finally:
            with log.phase("cleanup") as record:
                self._release_all()
                self._place(None)
                record["on_device"] = list(self.on_device)

    @contextmanager
    def _phase(self, log: PhaseLog, name: str, part: str) -> Iterator[Any]:
        with log.phase("place", part=part) as record:
            self._release_all()  # what an earlier phase or a failed job left behind
            self._place(part)
            record["on_device"] = list(self.on_device)
        try:
            with log.phase(name, part=part):
                yield self._parts[part].module
        finally:
            self._parts[part].release()

    def _release_all(self) -> None:
        for part in self._parts.values():
            part.release()

    def _place(self, wanted: str | None) -> None:
        """SEQUENTIAL: only `wanted` (or nothing) on the device, and the memory the others held handed back."""
        if self._sequential:
            for name in [name for name in self.on_device if name != wanted]:
                self._parts[name].module.to(self._cpu)
                self.on_device.remove(name)
        release_memory(self._runtime)
        if self._sequential and wanted is not None and wanted not in self.on_device:
            self._parts[wanted].module.to(self._device)
            self.on_device.append(wanted)
