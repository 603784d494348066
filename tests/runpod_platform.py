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

The client side, as RunPod documents it (https://docs.runpod.io/serverless/endpoints/operations), for
clients such as audio_client, on /v2/<ENDPOINT_ID>/ with `Authorization: Bearer <CLIENT_KEY>` (401
otherwise): POST run -> {"id", "status": "IN_QUEUE"}; POST runsync -> the final job, or {"id", "status":
"IN_QUEUE" | "IN_PROGRESS"} when it is not done within `sync_window_s`; GET status/<job> -> {"id",
"status", "output"} where output is the last progress update while IN_PROGRESS, the result when
COMPLETED, and "error" when FAILED; POST cancel/<job> -> CANCELLED (the job's id goes on the stop
channel); GET stream/<job> -> {"status", "stream": [{"output": item}, ...]}, the items since the last call.

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
ENDPOINT_ID = "test-endpoint"
CLIENT_KEY = "test-client-key"


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
    cancelled: set[str] = field(default_factory=set)
    streamed: dict[str, int] = field(default_factory=dict)  # items a client has read per job
    sync_window_s: float = 5.0
    # While holding, a posted result is kept aside and the job still reads IN_PROGRESS with its last progress:
    # a result that reaches clients late, so a test can see progress without racing a fast job.
    holding: bool = False
    held: dict[str, Posted] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client_view(self, job_id: str) -> dict[str, Any]:
        """The job as RunPod's /status shows it."""
        with self.lock:
            view: dict[str, Any] = {"id": job_id}
            if job_id in self.cancelled:
                return view | {"status": "CANCELLED"}
            if job_id in self.results:
                body = self.results[job_id].body
                if "error" in body:
                    return view | {"status": "FAILED", "error": body["error"]}
                return view | {"status": "COMPLETED", "output": body.get("output")}
            if job_id in self.taken:
                updates = self.progress.get(job_id)
                return view | {"status": "IN_PROGRESS"} | ({"output": updates[-1].body["output"]} if updates else {})
            return view | {"status": "IN_QUEUE"}


class _Handler(BaseHTTPRequestHandler):
    state: PlatformState
    platform: RunPodPlatform

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

    def _client_api(self, method: str) -> bool:
        """The client-facing job API; False when the path is not one of its routes."""
        prefix = f"/v2/{ENDPOINT_ID}/"
        path = urlsplit(self.path).path
        if not path.startswith(prefix):
            return False
        if self.headers.get("Authorization") != f"Bearer {CLIENT_KEY}":
            self.send_response(401)
            self.end_headers()
            return True
        operation, _, job_id = path.removeprefix(prefix).partition("/")
        body = (
            json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
            if method == "POST"
            else None
        )
        state = self.state
        if (method, operation) == ("POST", "run"):
            job_id = self.platform.submit(body["input"])
            self._send_json({"id": job_id, "status": "IN_QUEUE"})
        elif (method, operation) == ("POST", "runsync"):
            job_id = self.platform.submit(body["input"])
            deadline = time.monotonic() + state.sync_window_s
            while state.client_view(job_id)["status"] in ("IN_QUEUE", "IN_PROGRESS") and time.monotonic() < deadline:
                time.sleep(0.05)
            view = state.client_view(job_id)
            self._send_json(
                view if view["status"] not in ("IN_QUEUE", "IN_PROGRESS") else {"id": job_id, "status": view["status"]}
            )
        elif (method, operation) == ("GET", "status"):
            self._send_json(state.client_view(job_id))
        elif (method, operation) == ("POST", "cancel"):
            with state.lock:
                state.cancelled.add(job_id)
            self.platform.stop(job_id)
            self._send_json({"id": job_id, "status": "CANCELLED"})
        elif (method, operation) == ("GET", "stream"):
            status = state.client_view(job_id)["status"]  # first: a final status means every item is posted
            with state.lock:
                items = state.stream.get(job_id, [])
                start, state.streamed[job_id] = state.streamed.get(job_id, 0), len(items)
                fresh = [{"output": posted.body.get("output")} for posted in items[start:]]
            self._send_json({"id": job_id, "status": status, "stream": fresh})
        else:
            self.send_response(404)
            self.end_headers()
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self._client_api("GET"):
            return
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
        if self._client_api("POST"):
            return
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        posted = Posted(json.loads(raw), len(raw), parts.query)
        job_id = parts.path.rsplit("/", 1)[-1]
        with self.state.lock:
            if parts.path.startswith("/v2/job-stream/"):
                self.state.stream.setdefault(job_id, []).append(posted)
            elif posted.body.get("status") == "IN_PROGRESS":
                self.state.progress.setdefault(job_id, []).append(posted)
            elif self.state.holding:
                self.state.held[job_id] = posted
            else:
                self.state.results[job_id] = posted
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class RunPodPlatform:
    """A serving thread on a free loopback port; `env()` is what a worker needs to connect to it."""

    def __init__(self) -> None:
        self.state = PlatformState()
        handler = type("Handler", (_Handler,), {"state": self.state, "platform": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._count = 0
        self._counting = threading.Lock()  # clients submit from the server's threads too

    def client_env(self) -> dict[str, str]:
        """What a client needs to reach this platform's job API as if it were RunPod's."""
        return {"AUDIO_CLIENT_RUNPOD_URL": f"{self.url}/v2", "RUNPOD_API_KEY": CLIENT_KEY}

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
        with self._counting:
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

    def hold_results(self) -> None:
        with self.state.lock:
            self.state.holding = True

    def release_results(self) -> None:
        with self.state.lock:
            self.state.holding = False
            self.state.results.update(self.state.held)
            self.state.held.clear()

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
