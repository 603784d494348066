"""audio-client: run a job on any worker by name, then fetch its audio.

    audio-client run musicgen --set prompt="warm piano" --set duration=8 [--mode sync|async] [--out DIR]
    audio-client run musicgen --input request.json --file melody_audio=tune.wav
    audio-client status musicgen <job id>
    audio-client wait musicgen <job id> [--out DIR]
    audio-client cancel musicgen <job id>
    audio-client stream voxcpm --set target_text="Hello" --to hello.wav   (a STREAM_AUDIO=1 deployment)
    audio-client ui [--port 8765]      a page on http://127.0.0.1:8765/ to try every worker in a browser

Targets, where each worker runs (highest first):
  AUDIO_CLIENT_<WORKER>=<RunPod endpoint id | http://host:port of a local --rp_serve_api server>
  a TOML file: --config FILE, else $AUDIO_CLIENT_CONFIG, else ./audio-client.toml, else
  ~/.config/audio-client/config.toml, holding one table per worker:
      [workers.musicgen]
      endpoint = "abc123xyz"            # or: url = "http://127.0.0.1:8000"
  RunPod endpoints need RUNPOD_API_KEY.

Exit codes: 0 done (files saved); 1 the worker refused or failed the job (its error is printed as it is),
or the job was cancelled or timed out; 2 a usage or configuration problem (no target, no API key, a bad
flag, a file that cannot be sent); 3 the target could not be reached after retries; 4 gave up waiting
(--timeout); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from audio_client.files import (
    DOWNLOAD_TIMEOUT_S,
    INLINE_INPUT_MAX_BYTES,
    MAX_DOWNLOAD_BYTES,
    MAX_UPLOAD_BYTES,
    Bucket,
    DownloadRules,
    StreamFile,
    attach_file,
    save_outputs,
)
from audio_client.jobs import AudioClient, ClientError, JobResult
from audio_client.routing import UI_TOKEN_VARIABLE


def _value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, booleans, lists), the text itself otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ClientError(f"{flag} {item!r}: expected FIELD=VALUE", 2)
        pairs.append((name, value))
    return pairs


def build_input(args: argparse.Namespace, bucket: Bucket | None) -> dict[str, Any]:
    job_input: dict[str, Any] = {}
    if args.input is not None:
        try:
            loaded = json.loads(Path(args.input).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ClientError(f"--input {args.input}: {exc}", 2) from None
        job_input = loaded.get("input", loaded) if isinstance(loaded, dict) else {}
    job_input |= {name: _value(value) for name, value in _pairs(args.set, "--set")}
    for name, value in _pairs(args.file, "--file"):
        try:
            job_input[name] = attach_file(Path(value), bucket, args.inline_max_bytes)
        except (OSError, ValueError) as exc:
            raise ClientError(f"--file {name}: {exc}", 2) from None
    return job_input


class _Bar:
    drawn = False  # a progress line is on the terminal: end it before the next message


def _progress(update: dict[str, Any]) -> None:
    _Bar.drawn = True
    if "note" in update:
        print(update["note"], file=sys.stderr)
        return
    fraction = update.get("progress")
    if isinstance(fraction, int | float):
        filled = round(30 * fraction)
        bar = f"[{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%}"
    else:
        bar = "[" + " " * 30 + "]    ..."
    print(f"\r{bar} {update.get('stage', '')}", end="", file=sys.stderr, flush=True)


def download_rules(args: argparse.Namespace) -> DownloadRules:
    return DownloadRules(args.max_download_bytes, args.download_timeout, frozenset(args.allow_bucket))


def finish(client: AudioClient, result: JobResult, args: argparse.Namespace, bucket: Bucket | None) -> int:
    if _Bar.drawn:
        print(file=sys.stderr)
    if not result.ok:
        print(f"job {result.job_id} {result.status}: {result.error or result.output}", file=sys.stderr)
        return 1
    output = result.output if isinstance(result.output, dict) else {}
    try:
        saved = save_outputs(
            output,
            result.job_id,
            Path(args.out),
            bucket,
            args.worker_output_dir,
            download_rules(args),
            client.target(args.worker).url,
        )
    except (OSError, ValueError) as exc:
        raise ClientError(f"job {result.job_id}: {exc}", 2) from None
    for file in saved:
        duration = f"{file.duration_seconds:g} s" if file.duration_seconds is not None else "? s"
        print(f"{file.path}\t{duration}\t{file.format}\t(from {file.source})")
    return 0


def stream_to_file(
    client: AudioClient, args: argparse.Namespace, job_input: dict[str, Any], bucket: Bucket | None
) -> int:
    job_id = client.submit(args.worker, job_input)
    print(f"job {job_id}: streaming to {args.to}", file=sys.stderr)
    sink = StreamFile(args.to)

    def write(chunk: dict[str, Any]) -> None:
        sink.write(chunk)
        _Bar.drawn = True
        print(f"\r{sink.seconds:8.2f} s streamed", end="", file=sys.stderr, flush=True)

    try:
        result = client.stream(args.worker, job_id, write)
    finally:
        sink.close()
    if sink.seconds:
        print(f"{args.to}\t{sink.seconds:g} s\tstreamed")
    return finish(client, result, args, bucket)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="audio-client", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    main.add_argument(
        "--config",
        type=Path,
        help="the routing file (default: $AUDIO_CLIENT_CONFIG, else ./audio-client.toml, else "
        "~/.config/audio-client/config.toml)",
    )
    commands = main.add_subparsers(dest="command", required=True)

    def job_command(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text)
        command.add_argument("worker", help="worker name, e.g. musicgen")
        return command

    def output_folders(command: argparse.ArgumentParser) -> None:
        command.add_argument("--out", default="outputs", help="folder for the audio (default ./outputs)")
        command.add_argument("--worker-output-dir", type=Path, help="a local worker's OUTPUT_DIR, to copy from")
        command.add_argument(
            "--max-download-bytes",
            type=int,
            default=MAX_DOWNLOAD_BYTES,
            help="refuse an output file larger than this (default: 512 MiB)",
        )
        command.add_argument(
            "--download-timeout",
            type=float,
            default=DOWNLOAD_TIMEOUT_S,
            help="seconds to save one output file, retries included (default: 600)",
        )
        command.add_argument(
            "--allow-bucket",
            action="append",
            default=[],
            metavar="NAME",
            help="also download s3:// outputs from this bucket (default: BUCKET_NAME's only)",
        )

    def inline_limit(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--inline-max-bytes",
            type=int,
            default=INLINE_INPUT_MAX_BYTES,
            help="larger input files go through the bucket (default: 6 MiB, under RunPod's 10 MB /run body)",
        )

    def saving(command: argparse.ArgumentParser) -> None:
        output_folders(command)
        command.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the job")

    def requesting(command: argparse.ArgumentParser) -> None:
        command.add_argument("--input", help='a JSON file with the request (its "input" object, or the object)')
        command.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a request field")
        command.add_argument("--file", action="append", default=[], metavar="FIELD=PATH", help="a local audio file")
        inline_limit(command)

    run = job_command("run", "start a job; sync waits for it and saves its audio")
    run.add_argument("--mode", choices=("sync", "async"), default="sync")
    requesting(run)
    saving(run)
    stream = job_command("stream", "start a streaming job and write its audio chunks to a file as they arrive")
    stream.add_argument("--to", type=Path, required=True, help="the file: .wav for pcm_s16le chunks, .mp3 for mp3")
    requesting(stream)
    saving(stream)
    for name, help_text in (("status", "print a job's status"), ("cancel", "cancel a job")):
        job_command(name, help_text).add_argument("job_id")
    wait = job_command("wait", "wait for a job, showing its progress, then save its audio")
    wait.add_argument("job_id")
    saving(wait)
    ui = commands.add_parser("ui", help="serve a page on 127.0.0.1 to try every worker in a browser")
    ui.add_argument(
        "--host",
        default="127.0.0.1",
        help=f"interface to listen on (default: this machine only; another needs {UI_TOKEN_VARIABLE})",
    )
    ui.add_argument("--port", type=int, default=8765)
    ui.add_argument(
        "--max-upload-bytes",
        type=int,
        default=MAX_UPLOAD_BYTES,
        help="refuse a job's request, its files included, over this size (default: 256 MiB)",
    )
    output_folders(ui)
    inline_limit(ui)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    bucket = Bucket.from_environment()
    try:
        client = AudioClient(config=args.config)
        if args.command == "ui":
            from audio_client.ui import serve

            serve(
                client,
                bucket,
                Path(args.out),
                args.worker_output_dir,
                args.inline_max_bytes,
                args.host,
                args.port,
                os.environ.get(UI_TOKEN_VARIABLE) or None,
                args.max_upload_bytes,
                download_rules(args),
            )
            return 0
        if args.command == "status":
            print(json.dumps(client.status(args.worker, args.job_id), indent=2))
            return 0
        if args.command == "cancel":
            print(json.dumps(client.cancel(args.worker, args.job_id), indent=2))
            return 0
        if args.command == "wait":
            return finish(client, client.wait(args.worker, args.job_id, _progress, args.timeout), args, bucket)
        job_input = build_input(args, bucket)
        if args.command == "stream":
            return stream_to_file(client, args, job_input | {"stream": True}, bucket)
        if args.mode == "async":
            print(client.submit(args.worker, job_input))
            return 0
        return finish(client, client.run_sync(args.worker, job_input, _progress, args.timeout), args, bucket)
    except ClientError as exc:
        print(f"audio-client: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
