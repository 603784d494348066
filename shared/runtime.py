"""The inference library a worker runs on, behind the few things the pipeline asks of it.

shared/ imports no inference library itself: a torch worker's image carries torch, an ONNX worker's
carries onnxruntime and no torch. An adapter names its runtime (`ModelAdapter.runtime`, a key of
RUNTIMES) and the worker imports that runtime's module only.
"""

from __future__ import annotations

import importlib
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

# Runtime name -> the module that defines it (as RUNTIME), imported only by the workers that use it.
RUNTIMES = {"torch": "shared.torch_runtime", "onnxruntime": "shared.onnx_runtime"}


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: tuple[int, int] | None  # None when the driver does not report it


@dataclass(frozen=True)
class LibraryFacts:
    """What the inference library says about itself and the GPUs it can use."""

    build: str  # e.g. "torch 2.13.0"
    cuda: str | None  # the CUDA version it is built for, None for a CPU build
    sees_gpu: bool
    gpus: tuple[Gpu, ...]  # the GPUs it can use, with their compute capability


class Runtime(ABC):
    """Device, dtype, seeding, fault and memory questions, answered by one inference library."""

    @abstractmethod
    def library(self) -> LibraryFacts: ...

    @abstractmethod
    def device(self, kind: str) -> Any:
        """The library's handle for "cuda" or "cpu", as adapters receive it."""

    @abstractmethod
    def dtype(self, name: str) -> Any:
        """The library's handle for "float32", "float16" or "bfloat16"."""

    def seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)

    @abstractmethod
    def is_device_fault(self, exc: BaseException) -> bool:
        """Out of GPU memory, or a fault that leaves the GPU unusable: the worker is replaced after the job."""

    @abstractmethod
    def gpu_allocated_mib(self) -> float | None:
        """GPU memory this process holds through the library; None when it runs on no GPU."""

    @abstractmethod
    def gpu_peak_mib(self) -> float | None:
        """The most GPU memory held since `reset_gpu_peak`; None when it runs on no GPU."""

    @abstractmethod
    def reset_gpu_peak(self) -> None:
        """Start a new peak measurement (a job's)."""

    @abstractmethod
    def release_gpu(self) -> None:
        """Hand cached GPU memory back to the driver."""


def load_runtime(name: str) -> Runtime:
    return importlib.import_module(RUNTIMES[name]).RUNTIME
