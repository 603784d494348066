"""The two ways to reach a worker, behind one interface: RunPod's job API and the SDK's local test server.

RunPod: the runpod SDK's own HTTP client (`RunPodClient`: the API key, its base URL), on
  POST <endpoint>/run | /runsync | /cancel/<job>, GET <endpoint>/status/<job> | /stream/<job>.
Local (`--rp_serve_api`): plain HTTP on POST /run | /runsync | /status/<job> | /stream/<job>. That server
  simulates the API: /run only records the job, /status runs it then and there, /stream runs it whole;
  it has no progress updates and no cancel.

Network failures (no connection, a timeout, HTTP 429 or 5xx) are retried with exponential backoff.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

import requests

RETRIES = 4  # after the first try: waits of 1, 2, 4, 8 s
T = TypeVar("T")


class NetworkError(Exception):
    """The target could not be reached, after the retries."""


class TargetError(Exception):
    """The target answered, but not with a job (an unknown endpoint, a refused key, no such operation)."""


def with_retries(call: Callable[[], T], what: str, sleep: Callable[[float], None] = time.sleep) -> T:
    for attempt in range(RETRIES + 1):
        try:
            return call()
        except requests.HTTPError as exc:
            # `is not None`: a Response is falsy for every 4xx/5xx (its __bool__ is `ok`).
            status = exc.response.status_code if exc.response is not None else 0
            if status != 429 and status < 500:
                message = error_message(exc.response) if exc.response is not None else ""
                raise TargetError(f"{what}: HTTP {status}" + (f": {message}" if message else "")) from None
            failure: Exception = exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            failure = exc
        if attempt == RETRIES:
            raise NetworkError(f"{what}: {type(failure).__name__} after {RETRIES + 1} tries: {failure}") from None
        sleep(2.0**attempt)
    raise AssertionError("unreachable")


def error_message(response: requests.Response) -> str:
    """What a refusal's body says: its JSON "error", "message" or "detail" (RunPod's API, the SDK's local
    server), else its text; shortened."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        found = next((body[key] for key in ("error", "message", "detail") if body.get(key)), None)
        if found is not None:
            return str(found)[:500]
    return response.text.strip()[:500]


class Target(ABC):
    """One worker deployment. Every call returns the API's JSON: {"id", "status", "output" | "error", ...}."""

    description: str
    url: str  # where the client reaches it: its outputs' URLs may use this address's network (files.py)

    @abstractmethod
    def run(self, job_input: dict[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    def run_sync(self, job_input: dict[str, Any], timeout_s: float) -> dict[str, Any]: ...

    @abstractmethod
    def status(self, job_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def stream(self, job_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def cancel(self, job_id: str) -> dict[str, Any]: ...


class RunPodTarget(Target):
    def __init__(self, endpoint_id: str, api_key: str | None, base_url: str) -> None:
        if not api_key:
            raise TargetError(f"endpoint {endpoint_id}: set RUNPOD_API_KEY to your RunPod API key")
        from runpod.endpoint.runner import RunPodClient

        self._client = RunPodClient(api_key=api_key)
        self._client.endpoint_url_base = base_url
        self._endpoint = endpoint_id
        self.description = f"RunPod endpoint {endpoint_id}"
        self.url = f"{base_url}/{endpoint_id}"

    def _call(self, method: str, path: str, data: dict | None = None, timeout: float = 30) -> dict[str, Any]:
        """Through the SDK's client, which raises RuntimeError on HTTP 401 and HTTPError on the others."""

        def request() -> dict[str, Any]:
            try:
                if method == "GET":
                    return self._client.get(f"{self._endpoint}/{path}", timeout=timeout)
                return self._client.post(f"{self._endpoint}/{path}", data, timeout=timeout)
            except RuntimeError as exc:  # the SDK's message for HTTP 401
                raise TargetError(f"{self.description}: {exc}") from None

        return with_retries(request, f"{self.description} {path}")

    def run(self, job_input: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "run", {"input": job_input})

    def run_sync(self, job_input: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return self._call("POST", "runsync", {"input": job_input}, timeout=timeout_s)

    def status(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"status/{job_id}")

    def stream(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"stream/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"cancel/{job_id}")


class LocalTarget(Target):
    def __init__(self, url: str) -> None:
        self.url = url
        self._session = requests.Session()
        self.description = f"local server {url}"

    def _post(self, path: str, data: dict | None, timeout: float) -> dict[str, Any]:
        def request() -> dict[str, Any]:
            response = self._session.post(f"{self.url}/{path}", json=data, timeout=timeout)
            response.raise_for_status()
            return response.json()

        return with_retries(request, f"{self.description} /{path}")

    def run(self, job_input: dict[str, Any]) -> dict[str, Any]:
        return self._post("run", {"input": job_input}, 30)

    def run_sync(self, job_input: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return self._post("runsync", {"input": job_input}, timeout_s)

    def status(self, job_id: str) -> dict[str, Any]:
        return self._post(f"status/{job_id}", None, 3600)  # the local server runs the job during this call

    def stream(self, job_id: str) -> dict[str, Any]:
        return self._post(f"stream/{job_id}", None, 3600)

    def cancel(self, job_id: str) -> dict[str, Any]:
        raise TargetError(f"{self.description}: the SDK's local test server cannot cancel jobs")
