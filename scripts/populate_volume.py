"""Download real checkpoints into the network-volume layout (see network_volume_layout.md).

    python scripts/populate_volume.py <worker> --volume /runpod-volume              # its default repositories
    python scripts/populate_volume.py <worker> --model-id ORG/NAME --volume /runpod-volume
    python scripts/populate_volume.py <worker> --from BANK.zip|https://... [--name NAME] --volume /runpod-volume

A worker's default repositories come from its catalog (handlers/<worker>/catalog.py). Each repository
lands in <volume>/<worker>/<org>/<name>, the folder the worker reads (a catalog that assembles a model from
several repositories, as HeartMuLa's does, puts each piece in its subfolder of that folder). Only the files
a worker loads are fetched: where a repository ships safetensors, its legacy pickled duplicates
(pytorch_model.bin, MusicGen's state_dict.bin and compression_state_dict.bin, ...) are skipped.
Run it from a pod or a machine with the volume mounted; HF_TOKEN is used for gated repositories.
A worker whose models come as archives (DiffSinger's voicebanks and vocoders) installs them with --from:
the zip is unpacked (no member may point outside it), its catalog's `install` puts each model where the
worker reads it and checks it as the worker will; a problem is printed with the fix, and exits 1.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import shared  # noqa: E402
from shared import workers  # noqa: E402
from shared.errors import ModelFilesError  # noqa: E402
from shared.volume import make_readable  # noqa: E402

DOWNLOAD_TIMEOUT_SECONDS = 120

_LEGACY_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.ot")
_NEVER_NEEDED = (".gitattributes", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.mp4")


def files_to_fetch(repo_files: list[str], only: tuple[str, ...] = ()) -> list[str]:
    """The repository's files a worker needs: legacy weight formats only where no safetensors exist; with
    `only`, just the files matching one of those patterns."""
    has_safetensors = any(name.endswith(".safetensors") for name in repo_files)
    skipped = _NEVER_NEEDED + (_LEGACY_WEIGHTS if has_safetensors else ())
    return [
        name
        for name in repo_files
        if not any(fnmatch.fnmatch(Path(name).name, pattern) for pattern in skipped)
        and (not only or any(fnmatch.fnmatch(name, pattern) for pattern in only))
    ]


def target_folder(volume: Path, worker: str, repo_id: str) -> Path:
    org, _, name = repo_id.partition("/")
    if not org or not name or "/" in name or ".." in (org, name):
        raise ValueError(f"model id must look like ORG/NAME, got {repo_id!r}")
    return volume / worker / org / name


def populate(worker: str, repo_ids: tuple[str, ...], volume: Path, revision: str | None) -> list[Path]:
    # The one tool that must reach the hub: importing `shared` put this process offline.
    for variable in shared.OFFLINE_VARIABLES:
        os.environ.pop(variable, None)
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi()
    folders = []
    for repo_id in repo_ids:
        folder = target_folder(volume, worker, repo_id)
        for piece in workers.catalog(worker).pieces(repo_id):
            piece_revision = revision if piece.repo == repo_id else None  # --revision is the model's own
            wanted = files_to_fetch(api.list_repo_files(piece.repo, revision=piece_revision), piece.files)
            where = folder / piece.subfolder
            print(f"{piece.repo} -> {where} ({len(wanted)} files)")
            snapshot_download(piece.repo, revision=piece_revision, local_dir=where, allow_patterns=wanted)
        make_readable(folder)  # the images run as an unprivileged user
        folders.append(folder)
    return folders


def unpack(source: str, folder: Path) -> Path:
    """A zip file, or its URL, unpacked into `folder`; a member that would land outside it is refused."""
    archive = Path(source)
    if source.startswith(("https://", "http://")):
        archive = folder / "download.zip"
        with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out)
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"--from: {source} is not a zip file")
    unpacked = (folder / "unpacked").resolve()
    with zipfile.ZipFile(archive) as opened:
        for member in opened.infolist():
            if not (unpacked / member.filename).resolve().is_relative_to(unpacked):
                raise ValueError(f"--from: {source} holds {member.filename!r}, which points outside the archive")
        opened.extractall(unpacked)
    return unpacked


def install(worker: str, source: str, volume: Path, name: str | None) -> list[Path]:
    catalog = workers.catalog(worker)
    if catalog.install is None:
        raise ValueError(f"--from: {worker} models are hub repositories; use --model-id")
    volume.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=volume, prefix=".populate-") as folder:  # same disk: moves are renames
        try:
            return catalog.install(unpack(source, Path(folder)), volume, name)
        finally:
            make_readable(volume / worker)  # the images run as an unprivileged user


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("worker", choices=workers.worker_names())
    parser.add_argument("--model-id", action="append", help="ORG/NAME on the Hugging Face hub (repeatable)")
    parser.add_argument("--volume", type=Path, default=Path("/runpod-volume"), help="volume root")
    parser.add_argument("--revision", help="branch, tag or commit (default: main)")
    parser.add_argument("--from", dest="source", help="a zip file or its URL (workers whose models are archives)")
    parser.add_argument("--name", help="with --from: the folder name to install the one model under")
    args = parser.parse_args(argv)
    if args.source is not None:
        try:
            for folder in install(args.worker, args.source, args.volume, args.name):
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
    except ValueError as exc:
        parser.error(str(exc))
    populate(args.worker, repo_ids, args.volume, args.revision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
