"""onnxruntime as a worker's runtime: ONNX graphs on CUDA or the CPU, with no torch in the image.

The PyPI onnxruntime-gpu wheel is built for CUDA 13 and ships no CUDA libraries: the image installs
them from NVIDIA's wheels (the [cuda,cudnn] extras) and `preload_dlls` loads them from site-packages.
Whether this host can run them is asked of the CUDA runtime itself (device count, compute capability),
the same decision torch workers make from torch.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import onnxruntime
from onnxruntime.capi import build_and_package_info

from shared.runtime import Gpu, LibraryFacts, Runtime

# cudaDeviceAttr values of the compute capability, and cudaSuccess.
_CAPABILITY_MAJOR, _CAPABILITY_MINOR, _CUDA_SUCCESS = 75, 76, 0
# What onnxruntime's CUDA, cuDNN and cuBLAS failures say (its exceptions carry no finer type).
_FAULT_MARKERS = ("CUDA failure", "CUDNN failure", "CUBLAS failure", "cudaErrorMemoryAllocation", "Failed to allocate")


def _cuda_runtime(cuda: str) -> ctypes.CDLL | None:
    """libcudart, loaded the way onnxruntime will load it; None where there is none (a CPU machine)."""
    try:
        onnxruntime.preload_dlls(cuda=True, cudnn=True, msvc=False)
        return ctypes.CDLL(f"libcudart.so.{cuda.split('.')[0]}")
    except OSError:
        return None


class OnnxRuntime(Runtime):
    def __init__(self) -> None:
        self._cudart: ctypes.CDLL | None = None
        self._peak_mib: float | None = None
        self._lock = threading.Lock()

    def library(self) -> LibraryFacts:
        build = f"{build_and_package_info.package_name} {onnxruntime.__version__}"
        cuda = getattr(build_and_package_info, "cuda_version", None) or None  # None: the CPU package
        if cuda is None or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return LibraryFacts(build, None, False, ())
        if not Path("/dev/nvidiactl").exists():  # no NVIDIA driver in this container: no CUDA to load
            return LibraryFacts(build, cuda, False, ())
        self._cudart = self._cudart or _cuda_runtime(cuda)
        count = ctypes.c_int(0)
        if self._cudart is None or self._cudart.cudaGetDeviceCount(ctypes.byref(count)) != _CUDA_SUCCESS:
            return LibraryFacts(build, cuda, False, ())  # no GPU, or a driver too old for this CUDA
        gpus = tuple(Gpu(f"CUDA device {index}", self._capability(index)) for index in range(count.value))
        return LibraryFacts(build, cuda, bool(gpus), gpus)

    def _capability(self, index: int) -> tuple[int, int] | None:
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        get = self._cudart.cudaDeviceGetAttribute
        if get(ctypes.byref(major), _CAPABILITY_MAJOR, index) or get(ctypes.byref(minor), _CAPABILITY_MINOR, index):
            return None
        return major.value, minor.value

    def device(self, kind: str) -> str:
        return kind

    def dtype(self, name: str) -> str:
        return name  # a graph's dtypes are fixed at export; the name is reported, not applied

    def seed(self, seed: int) -> None:
        super().seed(seed)
        # The graphs' own random nodes (diffusion noise), but only in sessions created after this (on the CPU
        # a node's generator is seeded when its session is made; on CUDA they share one, which this restarts):
        # a worker whose graphs sample noise opens those graphs again per job, after this.
        onnxruntime.set_seed(seed)

    def is_device_fault(self, exc: BaseException) -> bool:
        return any(marker in str(exc) for marker in _FAULT_MARKERS)

    def gpu_allocated_mib(self) -> float | None:
        """GPU memory in use on the device (onnxruntime reports no per-process figure; a RunPod worker
        has its GPU to itself). Each reading also feeds the job's peak."""
        if self._cudart is None:
            return None
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        if self._cudart.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)) != _CUDA_SUCCESS:
            return None
        used = (total.value - free.value) / 2**20
        with self._lock:
            self._peak_mib = max(self._peak_mib or 0.0, used)
        return used

    def gpu_peak_mib(self) -> float | None:
        """The highest reading since `reset_gpu_peak` (sampled before, between and after the stages)."""
        self.gpu_allocated_mib()
        return self._peak_mib

    def reset_gpu_peak(self) -> None:
        with self._lock:
            self._peak_mib = None

    def release_gpu(self) -> None:
        """Nothing to hand back: a session's arena is freed with the session (the model cache drops it)."""


RUNTIME = OnnxRuntime()
