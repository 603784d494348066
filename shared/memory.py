"""Freeing what a job held, and measuring it: GPU memory on a GPU, process memory otherwise."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loguru import logger

from shared.runtime import Runtime

_LIBC_NAME = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_LIBC_NAME) if _LIBC_NAME else None
if _LIBC is not None and not hasattr(_LIBC, "malloc_trim"):  # not glibc (musl, ...)
    _LIBC = None


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def current_mib(runtime: Runtime) -> float:
    """Memory in use now: GPU memory the runtime holds on a GPU, else the process's resident size."""
    allocated = runtime.gpu_allocated_mib()
    return allocated if allocated is not None else _rss_mib()


def peak_mib(runtime: Runtime) -> float:
    """Peak since the last `reset_peak` (GPU), or the process's lifetime peak resident size (CPU)."""
    peak = runtime.gpu_peak_mib()
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak(runtime: Runtime) -> None:
    runtime.reset_gpu_peak()


def release_memory(runtime: Runtime) -> None:
    """Collect garbage, return freed heap pages to the OS, hand cached GPU memory back."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)  # glibc keeps freed arenas otherwise: process memory would not drop
    runtime.release_gpu()


def memory_kind(runtime: Runtime) -> str:
    return "cuda_allocated" if runtime.gpu_allocated_mib() is not None else "process_rss"


class PhaseLog:
    """A job's phases, each with the memory before and after it: logged, and reported in memory_mib.phases."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.records: list[dict[str, Any]] = []

    @contextmanager
    def phase(self, name: str, **facts: Any) -> Iterator[dict[str, Any]]:
        """Record one phase; the body may add facts to the yielded record. Recorded even when it fails."""
        record: dict[str, Any] = {"phase": name, **facts}
        before = current_mib(self._runtime)
        started = time.perf_counter()
        try:
            yield record
        finally:
            after = current_mib(self._runtime)
            record |= {
                "before_mib": round(before, 1),
                "after_mib": round(after, 1),
                "seconds": round(time.perf_counter() - started, 4),
            }
            self.records.append(record)
            logger.info("phase {}: memory {:.0f} -> {:.0f} MiB ({})", name, before, after, facts or "")
