"""loguru set-up: every line carries the job id, and secrets never reach the output."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

from loguru import logger

# Variables whose values are secrets even when their names do not say so.
_SECRET_VARIABLES = ("BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY|ACCESS_KEY", re.IGNORECASE)
# Presigned URLs carry a signature and a credential scope: useful to the caller, never to a log.
_SIGNED_QUERY = re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+")
# loguru appends the line end and any traceback itself.
_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | job {extra[job_id]} | {message}"


def _secret_values() -> list[str]:
    values = {
        value
        for name, value in os.environ.items()
        if (name in _SECRET_VARIABLES or _SECRET_NAME.search(name)) and len(value) >= 6
    }
    return sorted(values, key=len, reverse=True)  # longest first: a secret containing another is hidden whole


def redact(text: str) -> str:
    for value in _secret_values():
        text = text.replace(value, "***")
    return _SIGNED_QUERY.sub(r"\1***", text)


class _RedactingStream:
    """stdout/stderr for every writer in the process (the runpod SDK prints its own lines, results
    included): what reaches the terminal or the container log is redacted."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def configure_logging() -> None:
    if not isinstance(sys.stdout, _RedactingStream):
        sys.stdout = _RedactingStream(sys.stdout)
        sys.stderr = _RedactingStream(sys.stderr)
    logger.remove()
    logger.configure(extra={"job_id": "-"})
    logger.add(sys.stderr, format=_FORMAT, level=log_level(), colorize=False)


def log_level() -> str:
    return os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"


# The runpod SDK reads its own level (RUNPOD_LOG_LEVEL) once, at import, and defaults to DEBUG.
_SDK_LEVELS = {"TRACE": "TRACE", "DEBUG": "DEBUG", "INFO": "INFO", "SUCCESS": "INFO", "WARNING": "WARN"}


def sdk_log_level() -> str:
    """LOG_LEVEL in the SDK's names (ERROR for ERROR and CRITICAL)."""
    return _SDK_LEVELS.get(log_level(), "ERROR")


def silence(logger_name: str, pattern: str, when: Callable[[], bool] = lambda: True) -> None:
    """Drop a library's log records whose message matches `pattern` (re.search), while `when()` holds: for lines that
    say nothing about the job and that the library offers no switch for. Each caller says why."""
    matches = re.compile(pattern)

    def keep(record: logging.LogRecord) -> bool:
        return not (matches.search(record.getMessage()) and when())

    logging.getLogger(logger_name).addFilter(keep)


def _torch_without_cuda() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and torch.version.cuda is None


# torchao, which transformers imports whenever it is installed, loads its CUDA kernels at import: a CPU build of
# torch cannot, and torchao warns about each one. They matter only where CUDA is.
silence("torchao", r"^Failed to load .*_C\w*\.(abi3|cpython.*)\.so", when=_torch_without_cuda)
# torchao registers its Enums as pytree constants, which torch 2.13 deprecates with a warning per Enum: not ours.
silence("torch.utils._pytree", r"is an Enum subclass and is now natively supported by torch\.compile")
