"""Load a model once per worker and share it across jobs, under a residency policy."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from loguru import logger

from shared.memory import current_mib, release_memory
from shared.runtime import Runtime
from shared.settings import Residency

ModelT = TypeVar("ModelT")


@dataclass(frozen=True)
class LoadInfo:
    loaded_now: bool  # False: a warm job reused the loaded model
    load_seconds: float


class ModelCache(Generic[ModelT]):
    """Thread-safe: concurrent jobs share one model; with Residency.UNLOAD the last job out drops it."""

    def __init__(self, load: Callable[[], ModelT], residency: Residency, runtime: Runtime) -> None:
        self._load = load
        self._residency = residency
        self._runtime = runtime
        self._model: ModelT | None = None
        self._users = 0
        self._lock = threading.Lock()
        self.load_count = 0

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    @contextmanager
    def use(self) -> Iterator[tuple[ModelT, LoadInfo]]:
        with self._lock:
            info = LoadInfo(False, 0.0)
            if self._model is None:
                started = time.perf_counter()
                self._model = self._load()
                # The model and the libraries it imported live as long as the worker: move them out of
                # the cyclic collector's reach, or every job's cleanup re-scans millions of objects.
                gc.collect()
                gc.freeze()
                self.load_count += 1
                info = LoadInfo(True, time.perf_counter() - started)
                logger.info("model loaded in {:.2f} s (load #{})", info.load_seconds, self.load_count)
            self._users += 1
            model = self._model
        try:
            yield model, info
        finally:
            del model
            with self._lock:
                self._users -= 1
                if self._residency is Residency.UNLOAD and self._users == 0:
                    self.unload()

    def unload(self) -> None:
        """Drop the model and return its memory; the next job loads it again."""
        if self._model is None:
            return
        before = current_mib(self._runtime)
        self._model = None
        gc.unfreeze()
        release_memory(self._runtime)
        logger.info("model unloaded: memory {:.0f} -> {:.0f} MiB", before, current_mib(self._runtime))
