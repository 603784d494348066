"""The platform side of the runpod SDK's worker protocol (runpod-python 1.12), on 127.0.0.1, for tests.

A worker started with `platform.env()` runs exactly as on RunPod: `runpod.serverless.start` sees
RUNPOD_WEBHOOK_GET_JOB, runs its fitness checks, starts the heartbeat and the JobScaler, and then:

- takes jobs:      GET  /v2/job-take/<worker>?...&job_in_progress=0|1   -> a job {"id", "input"} or 204
                   GET  /v2/job-take-batch/<worker>?...&batch_size=N   -> [up to N jobs] or 204 (the SDK's
                        take when its concurrency_modifier allows more than one job at a time)
- polls stops:     GET  /v2/job-stop/<worker>?...                       -> {"jobsToStop": [ids]} or 204
- posts results:   POST /v2/job-done/<worker>/<job>?...&isStream=...    (also IN_PROGRESS progress updates)
- posts streams:   POST /v2/job-stream/<worker>/<job>?...&isStream=...  (a generator handler's items)
- pings:           GET  /v2/ping/<worker>?job_id=...&runpod_version=...

Every body is recorded with its size in bytes, so tests assert on what RunPod would receive.

Not imitated: other workers and the real queue (jobs are handed out in the order submitted, one per
take request), the clients' /run, /runsync, /status and /stream API, execution timeouts (a test sends
the stop itself, as the platform does when one expires), enforcement of payload limits (sizes are
measured; tests compare them with RunPod's 10 MB /run and 20 MB /runsync), retries, FlashBoot, scaling.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

POLL_SECONDS = 0.5  # how long a take or stop poll is held open when there is nothing to hand out


@dataclass
class Posted:
    body: dict[str, Any]
    size: int  # bytes as sent
    query: str


@dataclass
class PlatformState:
    jobs: queue.Queue = field(default_factory=queue.Queue)
    stops: queue.Queue = field(default_factory=queue.Queue)
    taken: list[str] = field(default_factory=list)
    results: dict[str, Posted] = field(default_factory=dict)
    progress: dict[str, list[Posted]] = field(default_factory=dict)
    stream: dict[str, list[Posted]] = field(default_factory=dict)
    pings: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: PlatformState

    def log_message(self, *args: Any) -> None:
        pass

    def _send_json(self, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _no_content(self) -> None:
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith(("/v2/job-take/", "/v2/job-take-batch/")):
            try:
                jobs = [self.state.jobs.get(timeout=POLL_SECONDS)]
            except queue.Empty:
                return self._no_content()
            batch_size = int(parse_qs(parts.query).get("batch_size", ["1"])[0])
            while len(jobs) < batch_size and not self.state.jobs.empty():
                jobs.append(self.state.jobs.get_nowait())
            with self.state.lock:
                self.state.taken.extend(job["id"] for job in jobs)
            return self._send_json(jobs if path.startswith("/v2/job-take-batch/") else jobs[0])
        if path.startswith("/v2/job-stop/"):
            try:
                ids = [self.state.stops.get(timeout=POLL_SECONDS)]
            except queue.Empty:
                return self._no_content()
            return self._send_json({"jobsToStop": ids})
        if path.startswith("/v2/ping/"):
            with self.state.lock:
                self.state.pings += 1
            return self._no_content()
        self.send_response(404)
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        posted = Posted(json.loads(raw), len(raw), parts.query)
        job_id = parts.path.rsplit("/", 1)[-1]
        with self.state.lock:
            if parts.path.startswith("/v2/job-stream/"):
                self.state.stream.setdefault(job_id, []).append(posted)
            elif posted.body.get("status") == "IN_PROGRESS":
                self.state.progress.setdefault(job_id, []).append(posted)
            else:
                self.state.results[job_id] = posted
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class RunPodPlatform:
    """A serving thread on a free loopback port; `env()` is what a worker needs to connect to it."""

    def __init__(self) -> None:
        self.state = PlatformState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._count = 0

    def env(self) -> dict[str, str]:
        query = "?gpu=test"
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{self.url}/v2/job-take/$ID{query}",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{self.url}/v2/job-done/$RUNPOD_POD_ID/$ID{query}",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{self.url}/v2/job-stream/$RUNPOD_POD_ID/$ID{query}",
            "RUNPOD_WEBHOOK_PING": f"{self.url}/v2/ping/$RUNPOD_POD_ID{query}",
            "RUNPOD_PING_INTERVAL": "1000",
            "RUNPOD_POD_ID": "test-worker",
            "RUNPOD_AI_API_KEY": "test-platform-key",
        }

    def submit(self, job_input: dict[str, Any]) -> str:
        return self.submit_together([job_input])[0]

    def submit_together(self, job_inputs: list[dict[str, Any]]) -> list[str]:
        """Queue jobs at one instant: a worker taking several at a time gets them in one take."""
        jobs = []
        for job_input in job_inputs:
            self._count += 1
            jobs.append({"id": f"job-{self._count}", "input": job_input})
        with self.state.jobs.mutex:  # one step, so a take in flight sees all of them or none
            self.state.jobs.queue.extend(jobs)
            self.state.jobs.not_empty.notify()
        return [job["id"] for job in jobs]

    def stop(self, job_id: str) -> None:
        """What /cancel or an expired execution timeout does: the job's id on the stop channel."""
        self.state.stops.put(job_id)

    def result(self, job_id: str, timeout: float = 180) -> Posted:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.state.lock:
                if job_id in self.state.results:
                    return self.state.results[job_id]
            time.sleep(0.05)
        raise TimeoutError(f"no result posted for {job_id} within {timeout} s")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
