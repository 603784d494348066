"""Errors whose message is written for the caller: the pipeline returns them as {"error": message}."""


class WorkerError(Exception):
    """Base: the message names what went wrong and how to fix it, and holds no secret."""


class InputError(WorkerError):
    """The job's input breaks a rule (a field, a cross-field rule, input audio that cannot be used)."""


class ModelFilesError(WorkerError):
    """The model's folder on the volume is missing or incomplete."""


class StorageError(WorkerError):
    """The result could not be written where the request or the environment asked."""


class SettingsError(WorkerError):
    """An environment variable holds a value the worker cannot use."""
