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

Who may use it: on a loopback address (the default), anyone on this machine, under this machine's own host
names only (a DNS-rebinding page cannot reach it under another). On any other address the server needs a
token (AUDIO_CLIENT_UI_TOKEN), which every request carries: opened once as /?token=..., it moves to a
cookie; scripts may send `Authorization: Bearer <token>`. The token, not the host name, guards it then.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audio_client.files import (
    CHUNK_BYTES,
    DEFAULT_DOWNLOAD_RULES,
    INLINE_INPUT_MAX_BYTES,
    MAX_UPLOAD_BYTES,
    OUTPUT_CONTENT_TYPES,
    Bucket,
    DownloadRules,
    Saved,
    attach_file,
    save_outputs,
)
from audio_client.jobs import AudioClient, ClientError, JobResult
from audio_client.routing import UI_TOKEN_VARIABLE
from audio_client.targets import LocalTarget

STATIC = Path(__file__).parent / "static"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
TOKEN_COOKIE = "audio_client_token"
HOST_HEADER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::[0-9]*)?")  # a name or [IPv6], then a port
# The page runs its own script and styles only, in no frame, with no type sniffing of what it is served.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
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

    def __init__(
        self,
        client: AudioClient,
        bucket: Bucket | None,
        out_dir: Path,
        worker_output_dir: Path | None,
        download_rules: DownloadRules,
    ):
        self.client = client
        self.bucket = bucket
        self.out_dir = out_dir
        self.worker_output_dir = worker_output_dir
        self.download_rules = download_rules
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
                    saved = save_outputs(
                        result.output,
                        job.job_id,
                        self.out_dir,
                        self.bucket,
                        self.worker_output_dir,
                        self.download_rules,
                        self.client.target(job.worker).url,
                    )
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
    """Every worker with its request schema, the fields all share and an example request (workers.json, written
    from the workers' request models by `make schemas`), and its target, or the routing error that says how to
    give it one."""
    catalog = json.loads(resources.files("audio_client").joinpath("workers.json").read_text())
    for entry in catalog:
        try:
            target = client.target(entry["name"])
            entry["target"] = target.description
            entry["progress_updates"] = not isinstance(target, LocalTarget)
        except ClientError as exc:
            entry["target_error"] = str(exc)
    return catalog


def _from_page(request: Request) -> bool:
    return request.headers.get(PAGE_HEADER) == "page"


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header, without its port or an IPv6 address's brackets: '[::1]:8765' is '::1';
    '' for a malformed one."""
    found = HOST_HEADER.fullmatch(header)
    return found.group(1).strip("[]").lower() if found else ""


class PageGuard:
    """Who may use the server (see the module's docstring), and the SECURITY_HEADERS on every response."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str], token: str | None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        refusal = self._refusal(Request(scope))
        await (refusal or self.app)(scope, receive, send_with_headers)

    def _matches(self, offered: str | None) -> bool:
        return self.token is not None and offered is not None and hmac.compare_digest(offered, self.token)

    def _refusal(self, request: Request) -> Response | None:
        if self.token is None:
            if host_name(request.headers.get("host", "")) in self.allowed_hosts:
                return None
            return _error("unknown host name: open the page as http://127.0.0.1:<port>/ or localhost", 400)
        if self._matches(request.query_params.get("token")):
            # From the address the user opened to a cookie, out of the address bar and the history.
            kept = urlencode([item for item in request.query_params.multi_items() if item[0] != "token"])
            response = RedirectResponse(request.url.path + (f"?{kept}" if kept else ""), status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return response
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self._matches(request.cookies.get(TOKEN_COOKIE)) or self._matches(bearer):
            return None
        return _error(f"this server needs its token: open /?token=<{UI_TOKEN_VARIABLE}>", 401)


def create_app(
    client: AudioClient,
    bucket: Bucket | None,
    out_dir: Path,
    worker_output_dir: Path | None = None,
    inline_max_bytes: int = INLINE_INPUT_MAX_BYTES,
    allowed_hosts: frozenset[str] = LOOPBACK_NAMES,
    token: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    download_rules: DownloadRules = DEFAULT_DOWNLOAD_RULES,
) -> Starlette:
    board = JobBoard(client, bucket, out_dir, worker_output_dir, download_rules)
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
        # The ASGI server reads no more than Content-Length, so this bounds the whole request.
        declared = request.headers.get("content-length", "")
        if not declared.isdigit():
            return _error("a job's request needs a Content-Length header", 411)
        if int(declared) > max_upload_bytes:
            return _error(
                f"the request is {declared} bytes, over the {max_upload_bytes}-byte limit (--max-upload-bytes)", 413
            )
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
                    # Messages name the upload as the page named it, never by this server's temporary path.
                    label = upload.filename or "audio"
                    file_name = Path(label).name  # the bucket key keeps it; '..' (or a folder's '') names no file
                    local = Path(folder) / (file_name if file_name not in ("", "..") else "audio")
                    try:
                        with local.open("wb") as sink:
                            while chunk := await upload.read(CHUNK_BYTES):
                                sink.write(chunk)
                        value = attach_file(local, bucket, inline_max_bytes, label=label)
                    except OSError as exc:
                        return _error(f"{part}: {label}: {exc.strerror}", 500)
                    except ValueError as exc:
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
        return FileResponse(
            saved.path,
            media_type=OUTPUT_CONTENT_TYPES.get(saved.format, "application/octet-stream"),
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
    return Starlette(routes=routes, middleware=[Middleware(PageGuard, allowed_hosts=allowed_hosts, token=token)])


def serve(
    client: AudioClient,
    bucket: Bucket | None,
    out_dir: Path,
    worker_output_dir: Path | None,
    inline_max_bytes: int,
    host: str,
    port: int,
    token: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    download_rules: DownloadRules = DEFAULT_DOWNLOAD_RULES,
) -> None:
    import uvicorn

    host = host.strip("[]")
    if token is None and not is_loopback(host):
        raise ClientError(
            f"--host {host}: other machines could use the page, and your RunPod key through it; set "
            f"{UI_TOKEN_VARIABLE} to a secret for the page to require, or listen on 127.0.0.1",
            2,
        )
    app = create_app(
        client,
        bucket,
        out_dir,
        worker_output_dir,
        inline_max_bytes,
        LOOPBACK_NAMES | {host.lower()},
        token,
        max_upload_bytes,
        download_rules,
    )
    address = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
    how = f" (open it once as {address}?token=<{UI_TOKEN_VARIABLE}>)" if token else ""
    print(f"audio-client ui: {address}{how}  (outputs saved under {out_dir})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
