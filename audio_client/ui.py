"""`audio-client ui`: one page on 127.0.0.1 that tries any worker in a browser.

Each worker's form is built in the browser (static/app.js) from its request schema's JSON Schema; this
server lists the workers with their schemas and targets, and runs each job through `AudioClient` in a
thread of its own: it submits the job, keeps the worker's progress updates (or, for a streaming job, its
audio chunks), then saves the outputs under --out and serves them to the page's players. The RunPod API
key and the bucket credentials stay in this process; the page never sees them.

    GET  /api/workers                      every worker: schema, example input, target (or what is missing)
    POST /api/jobs/<worker>                multipart: "input" (the request as JSON) and one file per audio
                                           field ("<field>" or "<field>.<index>"), sent as the client sends
                                           files (inline base64 up to 6 MiB, else through the bucket)
    GET  /api/jobs/<id>?chunks_from=<n>    state, progress, streamed chunks from n, result, outputs
    POST /api/jobs/<id>/cancel
    GET  /api/jobs/<id>/outputs/<index>    the audio (?download=1: as an attachment)
"""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from audio_client.files import INLINE_INPUT_MAX_BYTES, Bucket, Saved, attach_file, save_outputs
from audio_client.jobs import AudioClient, ClientError, JobResult
from audio_client.targets import LocalTarget
from shared.formats import AUDIO_FORMATS

STATIC = Path(__file__).parent / "static"
KEPT_JOBS = 100  # the page's recent jobs; older ones are forgotten (their files stay under --out)
# A request from the page carries this header: a cross-site form cannot set it without a CORS preflight,
# which this server never grants, so another site open in the browser cannot start jobs with your key.
PAGE_HEADER = "X-Audio-Client"


@dataclass
class UiJob:
    id: str
    worker: str
    stream: bool
    job_id: str | None = None
    status: str = "SUBMITTING"
    progress: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)
    result: JobResult | None = None
    error: str | None = None  # the worker's error string, or why the job could not be run
    outputs: list[Saved] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self, chunks_from: int) -> dict[str, Any]:
        with self.lock:
            output = self.result.output if self.result is not None and isinstance(self.result.output, dict) else {}
            # Inline audio is served from the saved file, not repeated in every poll.
            described = [
                {key: value for key, value in item.items() if key != "base64"} for item in output.get("outputs", [])
            ]
            return {
                "id": self.id,
                "worker": self.worker,
                "job_id": self.job_id,
                "status": self.status,
                "progress": self.progress,
                "chunks": self.chunks[chunks_from:],
                "chunk_count": len(self.chunks),
                "error": self.error,
                "result": ({**output, "outputs": described} if "outputs" in output else output) or None,
                "outputs": [
                    {**item, "src": f"/api/jobs/{self.id}/outputs/{index}"}
                    for index, item in enumerate(described)
                    if index < len(self.outputs)
                ],
            }


class JobBoard:
    """The page's jobs, each run to its end in its own thread by the client."""

    def __init__(self, client: AudioClient, bucket: Bucket | None, out_dir: Path, worker_output_dir: Path | None):
        self.client = client
        self.bucket = bucket
        self.out_dir = out_dir
        self.worker_output_dir = worker_output_dir
        self._jobs: OrderedDict[str, UiJob] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str) -> UiJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(self, worker: str, job_input: dict[str, Any]) -> UiJob:
        job = UiJob(uuid.uuid4().hex[:12], worker, stream=job_input.get("stream") is True)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT_JOBS:
                self._jobs.popitem(last=False)
        threading.Thread(target=self._run, args=(job, job_input), name=f"ui-job-{job.id}", daemon=True).start()
        return job

    def _run(self, job: UiJob, job_input: dict[str, Any]) -> None:
        try:
            job.job_id = self.client.submit(job.worker, job_input)
            with job.lock:
                job.status = "IN_QUEUE"
            if job.stream:
                result = self.client.stream(job.worker, job.job_id, lambda chunk: self._add_chunk(job, chunk))
            else:
                result = self.client.wait(job.worker, job.job_id, lambda update: self._progress(job, update))
            saved: list[Saved] = []
            error = None if result.ok else str(result.error or result.output or result.status)
            if result.ok and isinstance(result.output, dict):
                try:
                    saved = save_outputs(result.output, job.job_id, self.out_dir, self.bucket, self.worker_output_dir)
                except (OSError, ValueError) as exc:  # the job is done; only its audio is out of reach
                    error = f"the job completed, but its audio could not be fetched: {exc}"
            with job.lock:  # all at once: a page that sees the final status sees the outputs too
                job.result, job.outputs, job.error, job.status = result, saved, error, result.status
        except Exception as exc:  # noqa: BLE001 (whatever happens, the page's job ends and says why)
            with job.lock:
                job.status, job.error = "FAILED", str(exc) if isinstance(exc, ClientError) else repr(exc)

    @staticmethod
    def _progress(job: UiJob, update: dict[str, Any]) -> None:
        with job.lock:
            job.status, job.progress = "IN_PROGRESS", update

    @staticmethod
    def _add_chunk(job: UiJob, chunk: dict[str, Any]) -> None:
        with job.lock:
            job.status = "IN_PROGRESS"
            job.chunks.append(chunk)


def worker_catalog(client: AudioClient) -> list[dict[str, Any]]:
    """Every worker of handlers/*/ with its request schema (pydantic's JSON Schema), the example request
    of its test_input.json, and its target, or the routing error that says how to give it one."""
    from shared import workers
    from shared.schemas import JobRequest

    catalog = []
    for name in workers.worker_names():
        entry: dict[str, Any] = {
            "name": name,
            "common_fields": list(JobRequest.model_fields),
            "schema": workers.request_model(name).model_json_schema(),
            "example": json.loads((workers.HANDLERS / name / "test_input.json").read_text())["input"],
        }
        try:
            target = client.target(name)
            entry["target"] = target.description
            entry["progress_updates"] = not isinstance(target, LocalTarget)
        except ClientError as exc:
            entry["target_error"] = str(exc)
        catalog.append(entry)
    return catalog


def _from_page(request: Request) -> bool:
    return request.headers.get(PAGE_HEADER) == "page"


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    client: AudioClient,
    bucket: Bucket | None,
    out_dir: Path,
    worker_output_dir: Path | None = None,
    inline_max_bytes: int = INLINE_INPUT_MAX_BYTES,
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
) -> Starlette:
    board = JobBoard(client, bucket, out_dir, worker_output_dir)
    catalog = worker_catalog(client)
    names = {entry["name"] for entry in catalog}

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def list_workers(request: Request) -> Response:
        return JSONResponse(catalog)

    async def submit(request: Request) -> Response:
        if not _from_page(request):
            return _error(f"missing the {PAGE_HEADER} header: jobs are started from the page", 403)
        worker = request.path_params["worker"]
        if worker not in names:
            return _error(f"unknown worker {worker!r}", 404)
        # max_part_size bounds the JSON part; files spool to disk.
        async with request.form(max_part_size=64 * 1024**2) as form:
            try:
                job_input = json.loads(str(form.get("input") or "{}"))
            except json.JSONDecodeError as exc:
                return _error(f"input: not valid JSON ({exc})")
            if not isinstance(job_input, dict):
                return _error("input: must be a JSON object")
            with tempfile.TemporaryDirectory(prefix="audio-client-ui-") as folder:
                for part, upload in form.multi_items():
                    if part == "input" or isinstance(upload, str):
                        continue
                    name, _, index = part.partition(".")
                    local = Path(folder) / Path(upload.filename or "audio").name
                    local.write_bytes(await upload.read())
                    try:
                        value = attach_file(local, bucket, inline_max_bytes)
                    except (OSError, ValueError) as exc:
                        return _error(f"{part}: {exc}")
                    if index:
                        items = job_input.setdefault(name, [])
                        if not isinstance(items, list) or not index.isdigit() or int(index) >= len(items):
                            return _error(f"{part}: no slot {index} in the list {name}")
                        items[int(index)] = value
                    else:
                        job_input[name] = value
        return JSONResponse({"id": board.start(worker, job_input).id})

    def job_or_none(request: Request) -> UiJob | None:
        return board.get(request.path_params["job"])

    async def job_state(request: Request) -> Response:
        job = job_or_none(request)
        if job is None:
            return _error("no such job (this page keeps the last 100)", 404)
        chunks_from = request.query_params.get("chunks_from", "0")
        return JSONResponse(job.view(int(chunks_from) if chunks_from.isdigit() else 0))

    async def cancel(request: Request) -> Response:
        job = job_or_none(request)
        if not _from_page(request) or job is None or job.job_id is None:
            return _error("no such running job", 404)
        try:
            return JSONResponse(client.cancel(job.worker, job.job_id))
        except ClientError as exc:
            return _error(str(exc))

    async def output_file(request: Request) -> Response:
        job = job_or_none(request)
        index = int(request.path_params["index"])
        if job is None or index >= len(job.outputs):
            return _error("no such output", 404)
        saved = job.outputs[index]
        info = AUDIO_FORMATS.get(saved.format)
        return FileResponse(
            saved.path,
            media_type=info.content_type if info else "application/octet-stream",
            filename=saved.path.name,
            content_disposition_type="attachment" if request.query_params.get("download") else "inline",
        )

    routes = [
        Route("/", index),
        Route("/api/workers", list_workers),
        Route("/api/jobs/{worker}", submit, methods=["POST"]),
        Route("/api/jobs/{job}", job_state),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
        Route("/api/jobs/{job}/outputs/{index:int}", output_file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    # Only this machine's names: a DNS-rebinding page cannot reach the server under another host name.
    return Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))])


def serve(
    client: AudioClient,
    bucket: Bucket | None,
    out_dir: Path,
    worker_output_dir: Path | None,
    inline_max_bytes: int,
    host: str,
    port: int,
) -> None:
    import uvicorn

    hosts = ("127.0.0.1", "localhost", host)
    app = create_app(client, bucket, out_dir, worker_output_dir, inline_max_bytes, hosts)
    print(f"audio-client ui: http://{host}:{port}/  (outputs saved under {out_dir})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
