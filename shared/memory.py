"""Freeing what a job held, and measuring it: CUDA memory on a GPU, process memory otherwise."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
from pathlib import Path

import torch

_LIBC_NAME = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_LIBC_NAME) if _LIBC_NAME else None
if _LIBC is not None and not hasattr(_LIBC, "malloc_trim"):  # not glibc (musl, ...)
    _LIBC = None


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def current_mib() -> float:
    """Memory in use now: CUDA memory allocated by torch on a GPU, else the process's resident size."""
    if torch.cuda.is_available():
        return torch.cuda.memory_allocated() / 2**20
    return _rss_mib()


def peak_mib() -> float:
    """Peak since the last `reset_peak` (CUDA), or the process's lifetime peak resident size (CPU)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def release_memory() -> None:
    """Collect garbage, return freed heap pages to the OS, hand cached CUDA blocks and IPC handles back."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)  # glibc keeps freed arenas otherwise: process memory would not drop
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()


def memory_kind() -> str:
    return "cuda_allocated" if torch.cuda.is_available() else "process_rss"
