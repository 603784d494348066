"""Jobs on any worker by name: submit, run synchronously, wait with progress, status, cancel."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_client.routing import RUNPOD_URL, Route, RoutingError, load_routes, route_for
from audio_client.targets import LocalTarget, NetworkError, RunPodTarget, Target, TargetError

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
# RunPod answers /runsync within its sync window (about 90 s) and then with IN_QUEUE / IN_PROGRESS.
SYNC_WAIT_S = 120.0
Progress = Callable[[dict[str, Any]], None]  # receives the worker's {"stage", "progress"} updates


class ClientError(Exception):
    """What went wrong, said for a person; `exit_code` is the command's (see audio_client.cli)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class JobResult:
    job_id: str
    status: str  # COMPLETED, FAILED, CANCELLED, TIMED_OUT
    output: Any  # the worker's result (COMPLETED), or what the API returned with the final status
    error: str | None  # the worker's error string, as it is

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> JobResult:
        output = response.get("output")
        error = response.get("error")
        if error is None and isinstance(output, dict) and "error" in output:
            error = output["error"]
        return cls(str(response.get("id", "")), str(response.get("status")), output, error)

    @property
    def ok(self) -> bool:
        return self.status == "COMPLETED" and self.error is None


class AudioClient:
    def __init__(
        self,
        routes: Mapping[str, Route] | None = None,
        environ: Mapping[str, str] = os.environ,
        config: Path | None = None,
        poll_s: float = 1.0,
    ) -> None:
        try:
            self.routes = dict(routes) if routes is not None else load_routes(config, environ)
        except RoutingError as exc:
            raise ClientError(str(exc), 2) from None
        self._api_key = environ.get("RUNPOD_API_KEY")
        self._runpod_url = environ.get("AUDIO_CLIENT_RUNPOD_URL", RUNPOD_URL).rstrip("/")
        self._poll_s = poll_s

    def target(self, worker: str) -> Target:
        try:
            route = route_for(worker, self.routes)
            if route.url is not None:
                return LocalTarget(route.url)
            return RunPodTarget(str(route.endpoint_id), self._api_key, self._runpod_url)
        except (RoutingError, TargetError) as exc:
            raise ClientError(str(exc), 2) from None

    def _call(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return call()
        except NetworkError as exc:
            raise ClientError(str(exc), 3) from None
        except TargetError as exc:
            raise ClientError(str(exc), 2) from None

    def submit(self, worker: str, job_input: dict[str, Any]) -> str:
        """Start a job (/run); its id."""
        target = self.target(worker)
        return str(self._call(lambda: target.run(job_input))["id"])

    def run_sync(
        self, worker: str, job_input: dict[str, Any], on_progress: Progress | None = None, timeout_s: float = 3600
    ) -> JobResult:
        """/runsync; a job still queued or running when the sync window closes is then polled to its end."""
        target = self.target(worker)
        response = self._call(lambda: target.run_sync(job_input, SYNC_WAIT_S))
        if response.get("status") in FINAL:
            return JobResult.from_response(response)
        job_id = str(response["id"])
        if on_progress is not None:
            on_progress({"note": f"still {response.get('status')} after the sync window; waiting for job {job_id}"})
        return self.wait(worker, job_id, on_progress, timeout_s)

    def status(self, worker: str, job_id: str) -> dict[str, Any]:
        target = self.target(worker)
        return self._call(lambda: target.status(job_id))

    def wait(self, worker: str, job_id: str, on_progress: Progress | None = None, timeout_s: float = 3600) -> JobResult:
        """Poll /status until the job ends; each progress update the worker posted goes to `on_progress`."""
        target = self.target(worker)
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while True:
            response = self._call(lambda: target.status(job_id))
            if response.get("status") in FINAL:
                return JobResult.from_response(response)
            update = response.get("output")
            if on_progress is not None and isinstance(update, dict) and update != last:
                on_progress(update)
                last = update
            if time.monotonic() > deadline:
                raise ClientError(f"job {job_id}: still {response.get('status')} after {timeout_s:g} s", 4)
            time.sleep(self._poll_s)

    def stream(self, worker: str, job_id: str, on_item: Callable[[dict[str, Any]], None]) -> JobResult:
        """Read a streaming job's items as they come (/stream): audio chunks go to `on_item`; the last item
        is the worker's result (a streaming deployment's job output itself is empty)."""
        target = self.target(worker)
        result: dict[str, Any] | None = None
        while True:
            response = self._call(lambda: target.stream(job_id))
            for entry in response.get("stream", []):
                item = entry.get("output") if isinstance(entry, dict) else None
                if isinstance(item, dict) and ("outputs" in item or "error" in item):
                    result = item
                elif isinstance(item, dict):
                    on_item(item)
            if response.get("status") in FINAL:
                break
            time.sleep(self._poll_s)
        if result is None:  # not a streaming deployment: its result is the job's own output (or its error)
            return JobResult.from_response(response if response.get("error") else self.status(worker, job_id))
        return JobResult(job_id, str(response.get("status")), result, result.get("error"))

    def cancel(self, worker: str, job_id: str) -> dict[str, Any]:
        target = self.target(worker)
        return self._call(lambda: target.cancel(job_id))
