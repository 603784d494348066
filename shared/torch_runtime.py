"""torch as a worker's runtime: CUDA devices and dtypes, torch's seeds, its faults and its allocator."""

from __future__ import annotations

import torch

from shared.runtime import Gpu, LibraryFacts, Runtime


class TorchRuntime(Runtime):
    def library(self) -> LibraryFacts:
        sees_gpu = torch.cuda.is_available()
        gpus = tuple(
            Gpu(torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index))
            for index in range(torch.cuda.device_count() if sees_gpu else 0)
        )
        return LibraryFacts(f"torch {torch.__version__}", torch.version.cuda, sees_gpu, gpus)

    def device(self, kind: str) -> torch.device:
        return torch.device(kind)

    def dtype(self, name: str) -> torch.dtype:
        return getattr(torch, name)

    def seed(self, seed: int) -> None:
        super().seed(seed)
        torch.manual_seed(seed)  # seeds every CUDA device too

    def is_device_fault(self, exc: BaseException) -> bool:
        if isinstance(exc, torch.OutOfMemoryError):
            return True
        accelerator_error = getattr(torch, "AcceleratorError", None)
        if accelerator_error is not None and isinstance(exc, accelerator_error):
            return True
        return isinstance(exc, RuntimeError) and ("CUDA error" in str(exc) or "CUBLAS_STATUS" in str(exc))

    def gpu_allocated_mib(self) -> float | None:
        return torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else None

    def gpu_peak_mib(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None

    def reset_gpu_peak(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def release_gpu(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.ipc_collect()


RUNTIME = TorchRuntime()
