"""Download real checkpoints into the network-volume layout (see network_volume_layout.md).

    python scripts/populate_volume.py <worker> --volume /runpod-volume              # its default repositories
    python scripts/populate_volume.py <worker> --model-id ORG/NAME --volume /runpod-volume
    python scripts/populate_volume.py <worker> --from BANK.zip|https://... [--name NAME] --volume /runpod-volume
    python scripts/populate_volume.py <worker> --from FOLDER --model-id ORG/NAME --volume /runpod-volume

A worker's default repositories come from its catalog (handlers/<worker>/catalog.py). Each repository
lands in <volume>/<worker>/<org>/<name>, the folder the worker reads (a catalog that assembles a model from
several repositories, as HeartMuLa's does, puts each piece in its subfolder of that folder). Only the files
a worker loads are fetched: where a repository ships safetensors, its legacy pickled duplicates
(pytorch_model.bin, MusicGen's state_dict.bin and compression_state_dict.bin, ...) are skipped.
Run it from a pod or a machine with the volume mounted; HF_TOKEN is used for gated repositories.
A worker whose models come as archives (DiffSinger's voicebanks and vocoders) installs them with --from:
the zip is unpacked (no member may point outside it), its catalog's `install` puts each model where the
worker reads it and checks it as the worker will; a problem is printed with the fix, and exits 1.
A checkpoint published in a format the worker does not load (its catalog's `formats`: the model authors' own
layout, say) is converted on the way, from the hub, a cache (--hub-cache) or a local folder (--from FOLDER): it is
gathered and converted in a scratch folder on the volume, then renamed into place whole, with what was mapped
printed and kept in the folder's conversion.log.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import shared  # noqa: E402
from shared import workers  # noqa: E402
from shared.errors import ModelFilesError  # noqa: E402
from shared.volume import (  # noqa: E402
    HUB_CACHE,
    ForeignFormat,
    RepoPiece,
    hub_cache_snapshot,
    make_readable,
    populate_command,
    resolve_model_dir,
    weight_family,
)

DOWNLOAD_TIMEOUT_SECONDS = 120
CONVERSION_LOG = "conversion.log"  # in a converted model folder: what it was converted from, and what was mapped

_OTHER_FRAMEWORKS = ("*.h5", "*.msgpack", "*.ot", "*.onnx", "*.tflite")  # TensorFlow, Flax, Rust, ONNX exports
_PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.bin.index.json", "*.pth.index.json")
# transformers' `variant=` copies (model.fp32.safetensors, model.safetensors.index.fp32.json): workers load the
# default weights.
_WEIGHT_VARIANTS = ("*.*.safetensors", "*.*.bin", "*.index.*.json")
# A repository's code is never run (no trust_remote_code), its pictures and model card never read (its LICENSE
# file is fetched: the terms travel with the weights).
_NEVER_NEEDED = (".gitattributes", "*.md", "*.py", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.mp4")


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(PurePosixPath(name).name, pattern) for pattern in patterns)


def files_to_fetch(repo_files: list[str], only: tuple[str, ...] = (), never_loaded: tuple[str, ...] = ()) -> list[str]:
    """The repository's files a worker loads: a pickled weight file (or its index) only where no safetensors of
    the same weights exist, which the loaders would read instead; nothing another framework or no loader reads
    (`never_loaded`: the catalog's); with `only`, just the files matching one of those patterns."""
    in_safetensors = {weight_family(name) for name in repo_files if name.endswith(".safetensors")}
    return [
        name
        for name in repo_files
        if not _matches(name, _NEVER_NEEDED + _OTHER_FRAMEWORKS + _WEIGHT_VARIANTS + never_loaded)
        and not (_matches(name, _PICKLED_WEIGHTS) and weight_family(name) in in_safetensors)
        and (not only or any(fnmatch.fnmatch(name, pattern) for pattern in only))
    ]


def target_folder(volume: Path, worker: str, repo_id: str) -> Path:
    org, _, name = repo_id.partition("/")
    if not org or not name or "/" in name or ".." in (org, name):
        raise ValueError(f"model id must look like ORG/NAME, got {repo_id!r}")
    return volume / worker / org / name


class Hub:
    """The Hugging Face hub (HF_TOKEN for gated repositories)."""

    def __init__(self) -> None:
        # The one tool that must reach the hub: importing `shared` put this process offline.
        for variable in shared.OFFLINE_VARIABLES | shared.QUIET_VARIABLES:  # a download shows its progress
            os.environ.pop(variable, None)
        from huggingface_hub import HfApi

        self.api = HfApi()

    def list_files(self, repo: str, revision: str | None) -> list[str]:
        return self.api.list_repo_files(repo, revision=revision)

    def fetch(self, repo: str, revision: str | None, files: list[str], where: Path) -> None:
        from huggingface_hub import snapshot_download

        snapshot_download(repo, revision=revision, local_dir=where, allow_patterns=files)


class HubCache:
    """A Hugging Face cache folder instead of the hub: `hf download`'s (~/.cache/huggingface/hub) carried
    from a machine with network access, or RunPod's model cache (/runpod-volume/huggingface-cache/hub)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _snapshot(self, repo: str, revision: str | None) -> Path:
        snapshot = hub_cache_snapshot(self.root, repo, revision or "main")
        if snapshot is None:
            raise ValueError(f"--hub-cache: {repo} (revision {revision or 'main'}) is not in {self.root}")
        return snapshot

    def list_files(self, repo: str, revision: str | None) -> list[str]:
        snapshot = self._snapshot(repo, revision)
        return sorted(str(path.relative_to(snapshot)) for path in snapshot.rglob("*") if path.is_file())

    def fetch(self, repo: str, revision: str | None, files: list[str], where: Path) -> None:
        snapshot = self._snapshot(repo, revision)
        for name in files:
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(snapshot / name, where / name)  # the blob behind the cache's link


def plan(worker: str, repo_id: str, source: Hub | HubCache, revision: str | None) -> list[tuple[RepoPiece, list[str]]]:
    """What populating one model fetches: each repository it is made of, and the files of it a worker loads."""
    catalog = workers.catalog(worker)
    planned = []
    for piece in catalog.pieces(repo_id):
        piece_revision = revision if piece.repo == repo_id else None  # --revision is the model's own
        listed = source.list_files(piece.repo, piece_revision)
        planned.append((piece, files_to_fetch(listed, piece.files, catalog.never_loaded)))
    return planned


def populate(
    worker: str, repo_ids: tuple[str, ...], volume: Path, revision: str | None, source: Hub | HubCache
) -> list[Path]:
    catalog = workers.catalog(worker)
    folders = []
    for repo_id in repo_ids:
        folder = target_folder(volume, worker, repo_id)
        # A worker whose checkpoints may need converting gathers each in a scratch folder first: the model folder
        # appears whole or not at all. Others fetch in place, so an interrupted download resumes.
        with _scratch(volume, worker) if catalog.formats else contextlib.nullcontext() as scratch:
            gathered = scratch / "fetched" if scratch else folder
            for piece, wanted in plan(worker, repo_id, source, revision):
                where = gathered / piece.subfolder
                print(f"{piece.repo} -> {where} ({len(wanted)} files)")
                source.fetch(piece.repo, revision if piece.repo == repo_id else None, wanted, where)
            if scratch:
                place(catalog.formats, gathered, folder, scratch)
        make_readable(folder)  # the images run as an unprivileged user
        folders.append(folder)
    return folders


@contextlib.contextmanager
def _scratch(volume: Path, worker: str) -> Iterator[Path]:
    """A folder beside the worker's models (the same disk: moving out of it is a rename), removed afterwards."""
    (volume / worker).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=volume / worker, prefix=".populate-") as scratch:
        yield Path(scratch)


def place(formats: tuple[ForeignFormat, ...], source: Path, target: Path, scratch: Path) -> None:
    """A checkpoint into its model folder, whole: converted first when it is in one of the worker's foreign `formats`
    (what was mapped is printed and kept in the folder's conversion.log), and renamed into place last, replacing any
    folder there. `source` is left as it was unless it lies in `scratch`."""
    foreign = next((candidate for candidate in formats if candidate.recognise(source)), None)
    if foreign is not None:
        converted = scratch / "converted"
        converted.mkdir()
        print(f"{source} holds {foreign.name}: converting")
        started = time.monotonic()
        try:
            mapped = foreign.convert(source, converted)
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(f"converting {source} ({foreign.name}) failed: {exc}") from None
        log = [f"converted from {foreign.name} at {source}", *mapped, f"in {time.monotonic() - started:.1f} s"]
        print("\n".join(f"  {line}" for line in log[1:]))
        (converted / CONVERSION_LOG).write_text("\n".join(log) + "\n")
        source = converted
    elif not source.is_relative_to(scratch):
        shutil.copytree(source, scratch / "copied", symlinks=False)  # the caller's folder stays where it is
        source = scratch / "copied"
    if target.exists():
        target.rename(scratch / "replaced")  # removed with the scratch folder
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)


def from_folder(worker: str, source: Path, repo_id: str, volume: Path) -> Path:
    """A checkpoint in a local folder, as its publisher ships it, into the worker's folder for `repo_id`
    (converted when it is in a foreign format; the source may be that folder itself)."""
    folder = target_folder(volume, worker, repo_id)
    with _scratch(volume, worker) as scratch:
        place(workers.catalog(worker).formats, source.resolve(), folder, scratch)
    make_readable(folder)
    return folder


@dataclass(frozen=True)
class ArchiveLimits:
    """What --from accepts, checked before anything is unpacked: a zip bomb or an endless download is refused
    before it fills the volume. The defaults leave room for large voicebanks (rarely over a few GiB or a few
    thousand files); the --max-* options raise them."""

    download_bytes: int = 4 * 1024**3
    unpacked_bytes: int = 16 * 1024**3
    entries: int = 10_000


def _download(url: str, archive: Path, max_bytes: int) -> None:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response, archive.open("wb") as out:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ValueError(
                    f"--from: {url} is {declared} bytes, over the {max_bytes}-byte cap (--max-download-bytes)"
                )
            received = 0
            while chunk := response.read(1024 * 1024):  # counted as it comes: Content-Length may be absent or wrong
                received += len(chunk)
                if received > max_bytes:
                    raise ValueError(f"--from: {url} sends over the {max_bytes}-byte cap (--max-download-bytes)")
                out.write(chunk)
    except OSError as exc:  # unreachable, an HTTP error status, a timeout
        raise ValueError(f"--from: downloading {url} failed: {exc}") from None


def _check_archive(source: str, opened: zipfile.ZipFile, unpacked: Path, limits: ArchiveLimits) -> None:
    members = opened.infolist()
    if len(members) > limits.entries:
        raise ValueError(
            f"--from: {source} holds {len(members)} entries, over the {limits.entries} cap (--max-entries)"
        )
    # zipfile stops each member at its declared size (more data fails its CRC check): the sum bounds the writes.
    total = sum(member.file_size for member in members)
    if total > limits.unpacked_bytes:
        raise ValueError(
            f"--from: {source} unpacks to {total} bytes, over the {limits.unpacked_bytes}-byte cap "
            "(--max-unpacked-bytes)"
        )
    for member in members:
        if not (unpacked / member.filename).resolve().is_relative_to(unpacked):
            raise ValueError(f"--from: {source} holds {member.filename!r}, which points outside the archive")


def unpack(source: str, folder: Path, limits: ArchiveLimits, sha256: str | None = None) -> Path:
    """A zip file, or its URL, unpacked into `folder` once it passes `limits` and, given `sha256`, its checksum;
    a member that would land outside the folder is refused."""
    archive = Path(source)
    if source.startswith(("https://", "http://")):
        archive = folder / "download.zip"
        _download(source, archive, limits.download_bytes)
    if not archive.is_file():
        raise ValueError(f"--from: {source} is no file (give a zip file or its URL)")
    if sha256 is not None:
        with archive.open("rb") as opened:
            found = hashlib.file_digest(opened, "sha256").hexdigest()
        if found != sha256:
            raise ValueError(f"--sha256: {source} has sha256 {found}, expected {sha256}; not unpacked")
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"--from: {source} is not a zip file")
    unpacked = (folder / "unpacked").resolve()
    with zipfile.ZipFile(archive) as opened:
        _check_archive(source, opened, unpacked, limits)
        opened.extractall(unpacked)
    return unpacked


def install(
    worker: str, source: str, volume: Path, name: str | None, limits: ArchiveLimits, sha256: str | None = None
) -> list[Path]:
    catalog = workers.catalog(worker)
    if catalog.install is None:
        raise ValueError(f"--from: {worker} models are hub repositories; use --model-id")
    volume.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=volume, prefix=".populate-") as folder:  # same disk: moves are renames
        try:
            return catalog.install(unpack(source, Path(folder), limits, sha256), volume, name)
        finally:
            make_readable(volume / worker)  # the images run as an unprivileged user


def installed_models(worker: str, volume: Path) -> list[str]:
    """The MODEL_IDs of the worker's checkpoints on the volume: its model folders (ORG/NAME; a bank's folder for
    a worker of archives, its catalog's companion models left out), then RunPod's cached repositories the worker
    could start from."""
    catalog = workers.catalog(worker)
    root = volume / catalog.models_root()
    companions = [volume / catalog.worker / folder for folder in catalog.companion_folders]
    pattern = "*" if catalog.install is not None else "*/*"
    found = [
        str(folder.relative_to(root))
        for folder in sorted(root.glob(pattern))
        if folder.is_dir()
        and not folder.name.startswith(".")
        and not any(folder.is_relative_to(companion) for companion in companions)
        and not any(fnmatch.fnmatch(str(folder.relative_to(root)), name) for name in catalog.companion_models)
    ]
    for repo in sorted((volume / HUB_CACHE).glob("models--*--*")):
        model_id = repo.name.removeprefix("models--").replace("--", "/", 1)
        try:
            resolve_model_dir(worker, model_id, volume, catalog.required_files, catalog.weight_folders)
        except ModelFilesError:
            snapshot = hub_cache_snapshot(volume / HUB_CACHE, model_id)
            if not (snapshot and any(foreign.recognise(snapshot) for foreign in catalog.formats)):
                continue  # another worker's model, or incomplete for this one; one to convert is listed (and fails)
        if model_id not in found:
            found.append(model_id)
    return found


def verify_model(worker: str, volume: Path, model_id: str, output_dir: Path) -> tuple[bool, str]:
    """The worker's start-up on one checkpoint, then one short job (the adapter's example): (ok, what happened)."""
    import time

    from shared.pipeline import Worker
    from shared.settings import Settings, read_settings

    settings = read_settings(Settings).model_copy(
        update={"volume_root": volume, "model_id": model_id, "model_dir": None, "output_dir": output_dir}
    )
    started = time.monotonic()
    try:
        checked = Worker(workers.adapter_class(worker), settings)
        checked.start()
    except Exception as exc:  # the worker would answer every job with this
        return False, f"start-up failed: {exc}"
    loaded = time.monotonic() - started
    with checked.cache.use() as (adapter, _):
        job_input = adapter.example_input()
    result = checked.run({"id": "verify", "input": {**job_input, "return_base64": True}})
    if "error" in result:
        return False, f"loaded in {loaded:.1f} s; the job failed: {result['error']}"
    seconds = sum(output["duration_seconds"] for output in result["outputs"])
    return True, f"loaded in {loaded:.1f} s; {seconds:.1f} s of audio in {result['timings_s']['total']:.2f} s"


def verify(worker: str, volume: Path, model_ids: tuple[str, ...]) -> int:
    """A table of every checkpoint: OK, or the error with its fix. Exit status 1 when any fails."""
    model_ids = model_ids or tuple(installed_models(worker, volume))
    if not model_ids:
        how = (
            f"python scripts/populate_volume.py {worker} --from ARCHIVE.zip --volume {volume}"
            if workers.catalog(worker).install is not None
            else populate_command(worker, "<ORG/NAME>", volume)
        )
        print(f"no {worker} checkpoint on {volume}: populate one with {how}")
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="verify-") as output_dir:
        for model_id in model_ids:
            ok, what = verify_model(worker, volume, model_id, Path(output_dir))
            rows.append((model_id, "OK" if ok else "FAILED", what))
    width = max(len(model_id) for model_id, _, _ in rows)
    print(f"{'checkpoint'.ljust(width)}  result  details")
    for model_id, status, what in rows:
        print(f"{model_id.ljust(width)}  {status.ljust(6)}  {what}")
    return 0 if all(status == "OK" for _, status, _ in rows) else 1


def _sha256_digest(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise argparse.ArgumentTypeError(f"must be 64 hexadecimal digits, got {value!r}")
    return value.lower()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("worker", choices=workers.worker_names())
    parser.add_argument("--model-id", action="append", help="ORG/NAME on the Hugging Face hub (repeatable)")
    parser.add_argument("--volume", type=Path, default=Path("/runpod-volume"), help="volume root")
    parser.add_argument("--revision", help="branch, tag or commit (default: main)")
    parser.add_argument(
        "--hub-cache", type=Path, help="take the repositories from this Hugging Face cache folder, not the hub"
    )
    parser.add_argument(
        "--from",
        dest="source",
        help="a zip file or its URL (workers whose models are archives); or a local folder holding one checkpoint as "
        "its publisher ships it, with --model-id naming it (converted when in a format the worker does not load)",
    )
    parser.add_argument("--name", help="with --from: the folder name to install the one model under")
    parser.add_argument(
        "--sha256", type=_sha256_digest, help="with --from: the archive's SHA-256, checked before unpacking"
    )
    defaults = ArchiveLimits()
    for option, default, what in (
        ("--max-download-bytes", defaults.download_bytes, "a URL's download larger than this"),
        ("--max-unpacked-bytes", defaults.unpacked_bytes, "an archive unpacking to more bytes than this"),
        ("--max-entries", defaults.entries, "an archive of more entries than this"),
    ):
        parser.add_argument(option, type=int, default=default, help=f"with --from: refuse {what} (%(default)s)")
    parser.add_argument(
        "--verify", action="store_true", help="start the worker on every installed checkpoint and run one short job"
    )
    args = parser.parse_args(argv)
    if args.verify:
        return verify(args.worker, args.volume, tuple(args.model_id or ()))
    if args.sha256 is not None and args.source is None:
        parser.error("--sha256: checks an archive; give it with --from")
    if args.source is not None and Path(args.source).is_dir() and workers.catalog(args.worker).install is None:
        if len(args.model_id or ()) != 1:
            parser.error("--from FOLDER: give one --model-id, the ORG/NAME the checkpoint is (its folder's name)")
        try:
            print(f"installed {from_folder(args.worker, Path(args.source), args.model_id[0], args.volume)}")
        except ValueError as exc:
            parser.error(str(exc))
        return 0
    if args.source is not None:
        limits = ArchiveLimits(args.max_download_bytes, args.max_unpacked_bytes, args.max_entries)
        try:
            for folder in install(args.worker, args.source, args.volume, args.name, limits, args.sha256):
                print(f"installed {folder}")
        except ValueError as exc:
            parser.error(str(exc))
        except ModelFilesError as exc:
            print(f"installed, but the worker cannot use it: {exc}", file=sys.stderr)
            return 1
        return 0
    repo_ids = tuple(args.model_id) if args.model_id else workers.catalog(args.worker).repositories
    if not repo_ids:
        parser.error(f"{args.worker}: its models come as archives; give --from FILE_OR_URL")
    try:
        for repo_id in repo_ids:
            target_folder(args.volume, args.worker, repo_id)
        populate(
            args.worker, repo_ids, args.volume, args.revision, HubCache(args.hub_cache) if args.hub_cache else Hub()
        )
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
