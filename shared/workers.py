"""The workers of this repository, found by listing handlers/*/: every tool discovers them here.

Each folder holds the same files (STANDARD_FILES); a tool imports only the worker it is asked about.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from shared.volume import VolumeCatalog

HANDLERS = Path(__file__).resolve().parents[1] / "handlers"
STANDARD_FILES = (
    "__init__.py",
    "__main__.py",  # the one entry point: python -m handlers.<model>
    "adapter.py",  # the ModelAdapter: load + generate
    "schema.py",  # the request schema (no torch)
    "config.py",  # the model's own environment variables
    "catalog.py",  # its part of the network volume (CATALOG)
    "fixtures.py",  # tiny/bench model builders and the contract case (TINY_MODELS, CONTRACT)
    "baseline.py",  # the bare library calls the benchmark compares with (BASELINE)
    "requirements.txt",
    "requirements.lock",  # what the image installs: every package pinned with hashes (scripts/lock_requirements.py)
    "test_input.json",
    "README.md",
)


def worker_names() -> list[str]:
    return sorted(path.name for path in HANDLERS.iterdir() if (path / "__init__.py").is_file())


def module(worker: str, name: str) -> ModuleType:
    if worker not in worker_names():
        raise ValueError(f"unknown worker {worker!r}; workers: {', '.join(worker_names())}")
    return importlib.import_module(f"handlers.{worker}.{name}")


def catalog(worker: str) -> VolumeCatalog:
    return module(worker, "catalog").CATALOG


def _defined_subclass(worker: str, module_name: str, base: type) -> type:
    defined = module(worker, module_name)
    [found] = [
        value
        for value in vars(defined).values()
        if isinstance(value, type) and issubclass(value, base) and value.__module__ == defined.__name__
    ]
    return found


def adapter_class(worker: str) -> type:
    """The ModelAdapter subclass defined in handlers/<worker>/adapter.py (imports the model's libraries)."""
    from shared.adapter import ModelAdapter

    return _defined_subclass(worker, "adapter", ModelAdapter)


def config_class(worker: str) -> type:
    """The ModelConfig subclass defined in handlers/<worker>/config.py (light: no model library)."""
    from shared.settings import ModelConfig

    return _defined_subclass(worker, "config", ModelConfig)


def request_model(worker: str) -> type:
    """The JobRequest subclass defined in handlers/<worker>/schema.py (light: pydantic, no model library)."""
    from shared.schemas import JobRequest

    return _defined_subclass(worker, "schema", JobRequest)
