"""Model folders on the network volume (see network_volume_layout.md).

A model is found, in this order:
1. MODEL_DIR, when set: that folder, as it is;
2. <VOLUME_ROOT>/<handler>/[<models folder>/]<org>/<name>: the layout our populator writes (a worker whose
   models are not hub repositories keeps them one folder down, its catalog's models_folder);
3. <VOLUME_ROOT>/huggingface-cache/hub/models--<org>--<name>/snapshots/<revision>: RunPod's cached
   Hugging Face models (the revision refs/main names, else the only snapshot).
Runtime never reaches a hub: importing `shared` sets the offline variables before any model library loads.

Each worker declares what its folders hold in a `VolumeCatalog` (handlers/<model>/catalog.py), read by
the worker, by scripts/populate_volume.py and by the test that keeps network_volume_layout.md complete.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shared.errors import ModelFilesError

RequiredFile = str | tuple[str, ...]  # a tuple: any one of these names will do


@dataclass(frozen=True)
class RepoPiece:
    """One hub repository's share of a model folder assembled from several (heartlib's checkpoint layout)."""

    repo: str  # ORG/NAME on the hub
    subfolder: str = ""  # where under the model folder it lands ("" = the folder itself)
    files: tuple[str, ...] = ()  # the file patterns it contributes; () = every file a worker needs


@dataclass(frozen=True)
class ForeignFormat:
    """A layout a worker's checkpoints are published in that its loaders do not read (the model authors' own,
    say), and its converter: the worker refuses such a folder at start-up with the command that converts it,
    and the populator converts it on the way to the volume."""

    name: str  # as errors and logs name it, e.g. "the authors' format (config.json model_type 'x')"
    recognise: Callable[[Path], bool]  # whether a folder is in this format (reads small files only)
    # (folder in this format, empty destination folder) -> one line per thing mapped, for the populator's log.
    convert: Callable[[Path, Path], list[str]]


@dataclass(frozen=True)
class VolumeCatalog:
    """One worker's part of the network volume."""

    worker: str  # folder under the volume root, and the worker's name everywhere
    default_model_id: str  # ORG/NAME read when MODEL_ID is unset
    repositories: tuple[str, ...]  # hub repositories the populator fetches by default, the default model first
    required_files: tuple[RequiredFile, ...]  # what a complete model folder holds
    weight_folders: tuple[str, ...] = ("",)  # where the weights live ("" = the folder itself)
    companion_folders: tuple[str, ...] = ()  # other folders under <worker>/ the worker reads (e.g. voices)
    models_folder: str = ""  # where under <worker>/ its models live ("" = <worker>/ itself)
    # For models packaged as archives rather than hub repositories: (unpacked archive, volume root, name or
    # None) -> the folders it installed, each checked (a ModelFilesError says what is wrong).
    install: Callable[[Path, Path, str | None], list[Path]] | None = None
    # For models whose folder is assembled from several hub repositories: model id -> the pieces.
    assemble: Callable[[str], tuple[RepoPiece, ...]] | None = None
    # Files its repositories publish that no loader of this worker reads (another library's format, say):
    # the populator leaves them out.
    never_loaded: tuple[str, ...] = ()
    # Model folders that are parts of other models, not models to start (an audio tokenizer found beside its
    # LM): patterns of their ids under the models folder.
    companion_models: tuple[str, ...] = ()
    # Formats some of its checkpoints are published in that the populator converts (see ForeignFormat).
    formats: tuple[ForeignFormat, ...] = ()
    # Repositories known under several names (renamed on the hub): each group's names, the current one first.
    # A model folder or a model-cache snapshot under any of them serves a MODEL_ID naming any other.
    renamed: tuple[tuple[str, ...], ...] = ()

    def names(self, model_id: str) -> tuple[str, ...]:
        """The model's id, then the other names its repository is known under."""
        group = next((names for names in self.renamed if model_id in names), (model_id,))
        return (model_id, *(name for name in group if name != model_id))

    def pieces(self, model_id: str) -> tuple[RepoPiece, ...]:
        """The repositories a model folder is made of: the model's own alone, unless the catalog assembles."""
        return self.assemble(model_id) if self.assemble is not None else (RepoPiece(model_id),)

    def models_root(self) -> str:
        return f"{self.worker}/{self.models_folder}" if self.models_folder else self.worker

    def model_folder(self, volume_root: Path, model_id: str) -> Path:
        return volume_root / self.models_root() / model_id

    def folders(self) -> list[str]:
        """Every folder, relative to the volume root, that this worker reads by default."""
        return [f"{self.models_root()}/{repo}" for repo in self.repositories] + [
            f"{self.worker}/{folder}" for folder in self.companion_folders
        ]


def populate_command(worker: str, model_id: str, volume_root: Path) -> str:
    return f"python scripts/populate_volume.py {worker} --model-id {model_id} --volume {volume_root}"


def convert_command(worker: str, model_id: str, volume_root: Path, folder: Path) -> str:
    """The populator run that converts a checkpoint found in a foreign format into the worker's volume folder:
    from RunPod's model cache when it is there (the cache holds the repository as published), else from the
    folder itself (a copy in the authors' layout, converted in place)."""
    hub_root = volume_root / HUB_CACHE
    if folder.is_relative_to(hub_root):
        return f"{populate_command(worker, model_id, volume_root)} --hub-cache {hub_root}"
    return f"{populate_command(worker, model_id, volume_root)} --from {folder}"


HUB_CACHE = "huggingface-cache/hub"  # RunPod's model cache, under the volume root


def hub_cache_snapshot(hub_root: Path, model_id: str, revision: str = "main") -> Path | None:
    """A repository's snapshot in a Hugging Face cache folder (RunPod's, or `hf download`'s): the one its
    ref names (`revision` may also be the snapshot's commit), else the only snapshot there is."""
    repo = hub_root / ("models--" + model_id.replace("/", "--"))
    ref = repo / "refs" / revision
    if ref.is_file():
        snapshot = repo / "snapshots" / ref.read_text().strip()
        return snapshot if snapshot.is_dir() else None
    if (repo / "snapshots" / revision).is_dir():
        return repo / "snapshots" / revision
    snapshots = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    return snapshots[0] if len(snapshots) == 1 and revision == "main" else None


def _find_folder(models_root: Path, volume_root: Path, names: tuple[str, ...]) -> Path:
    """A model's folder under the worker's models root, else its model-cache snapshot, under any of its names;
    the folder of its first name when none exists (for the error)."""
    for name in names:
        if (models_root / name).is_dir():
            return models_root / name
    for name in names:
        snapshot = hub_cache_snapshot(volume_root / HUB_CACHE, name)
        if snapshot is not None:
            return snapshot
    return models_root / names[0]


# The weight files loaders read, one row per name family: transformers names its weights model.*, diffusers
# diffusion_pytorch_model.*. The safetensors form comes first, as the loaders prefer it; the pickled form is
# what some publishers ship alone, read with torch.load(weights_only=True). Either
# may be one file or shards listed by `<name>.index.json`.
WEIGHT_FILES = (
    ("model.safetensors", "pytorch_model.bin"),
    ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
)


def weight_family(name: str) -> str:
    """The weights a file holds, whatever its format or shard: `pytorch_model-00001-of-00002.bin`,
    `model.safetensors.index.json` and `model.safetensors` are all `model`; `vae/x.pth` is `vae/x`."""
    path = PurePosixPath(name)
    stem = re.sub(r"-\d+-of-\d+$", "", path.name.removesuffix(".index.json").split(".", 1)[0])
    return str(path.parent / ("model" if stem == "pytorch_model" else stem))


def _missing_weights(folder: Path, subfolder: str) -> list[str]:
    """Weights in `folder/subfolder`: one file, or an index whose every shard is present."""
    where = folder / subfolder
    prefix = f"{subfolder}/" if subfolder else ""
    for name in (name for family in WEIGHT_FILES for name in family):
        index = where / f"{name}.index.json"
        if index.is_file():
            shards = set(json.loads(index.read_text())["weight_map"].values())
            return sorted(prefix + shard for shard in shards if not (where / shard).is_file())
        if (where / name).is_file():
            return []
    return [prefix + " or ".join(name for family in WEIGHT_FILES for name in family)]


def _is_present(folder: Path, required: RequiredFile) -> bool:
    names = (required,) if isinstance(required, str) else required
    return any((folder / name).is_file() for name in names)


def resolve_model_dir(
    worker: str,
    model_id: str,
    volume_root: Path,
    required_files: Iterable[RequiredFile],
    weight_folders: Iterable[str] = ("",),
    explicit_dir: Path | None = None,
    models_folder: str = "",
    formats: Iterable[ForeignFormat] = (),
    other_names: Iterable[str] = (),
) -> Path:
    """The folder holding a complete checkpoint, or a ModelFilesError naming the path and the fix.

    `weight_folders`: where weights must be ("" = the folder itself; a diffusers pipeline keeps one set per
    component subfolder; none for a model whose weights have other names). `explicit_dir`
    (MODEL_DIR) skips the lookup; `models_folder`, `formats` and the model's `other_names` are the catalog's.
    """
    command = populate_command(worker, model_id, volume_root)
    folder = (
        explicit_dir
        if explicit_dir is not None
        else _find_folder(volume_root / worker / models_folder, volume_root, (model_id, *other_names))
    )
    if not folder.is_dir():
        raise ModelFilesError(
            f"model folder {folder} not found (MODEL_ID={model_id}, VOLUME_ROOT={volume_root}); "
            f"populate it with: {command}"
        )
    for foreign in formats:
        if foreign.recognise(folder):
            raise ModelFilesError(
                f"model folder {folder} holds {foreign.name}, which this worker does not load; convert it with: "
                f"{convert_command(worker, model_id, volume_root, folder)}"
                + (
                    f" (then point MODEL_DIR at {volume_root / worker / models_folder / model_id})"
                    if explicit_dir
                    else ""
                )
            )
    missing = [
        required if isinstance(required, str) else " or ".join(required)
        for required in required_files
        if not _is_present(folder, required)
    ] + [name for subfolder in weight_folders for name in _missing_weights(folder, subfolder)]
    if missing:
        raise ModelFilesError(
            f"model folder {folder} is incomplete, missing: {', '.join(missing)}; re-populate it with: {command}"
        )
    unreadable = unreadable_paths(folder)
    if unreadable:
        shown = ", ".join(str(path.relative_to(folder)) for path in unreadable[:3])
        raise ModelFilesError(
            f"model folder {folder}: {len(unreadable)} path(s) this worker (uid {os.geteuid()}) cannot read, e.g. "
            f"{shown}; make them readable with: chmod -R a+rX {folder}"
        )
    return folder


def unreadable_paths(folder: Path) -> list[Path]:
    """Files this process cannot read and folders it cannot enter (a root populator's 0600 files, say):
    the libraries would report them as missing."""
    found = []
    for root, folders, files in os.walk(folder):
        here = Path(root)
        for name in folders:
            if not os.access(here / name, os.R_OK | os.X_OK, effective_ids=True):
                found.append(here / name)
        found += [here / name for name in files if not os.access(here / name, os.R_OK, effective_ids=True)]
    return sorted(found)


def make_readable(folder: Path) -> None:
    """What populating tools run last: every file readable and every folder enterable by any user (the
    images run as an unprivileged user), as `chmod -R a+rX` does."""
    for root, folders, files in os.walk(folder):
        here = Path(root)
        for path in [here, *(here / name for name in folders)]:
            path.chmod(path.stat().st_mode | 0o555)
        for name in files:
            (here / name).chmod((here / name).stat().st_mode | 0o444)


def model_source(folder: Path, volume_root: Path, explicit_dir: Path | None = None) -> str:
    """Where a resolved model folder lies, for the start-up log: MODEL_DIR, RunPod's model cache (the repository
    and the snapshot's revision), the volume's own layout, or another folder."""
    if explicit_dir is not None and folder == explicit_dir:
        return f"MODEL_DIR {folder}"
    hub_root = volume_root / HUB_CACHE
    if folder.is_relative_to(hub_root):
        parts = folder.relative_to(hub_root).parts  # models--<org>--<name>, snapshots, <revision>
        if len(parts) >= 3 and parts[0].startswith("models--") and parts[1] == "snapshots":
            repo = parts[0].removeprefix("models--").replace("--", "/", 1)
            return f"RunPod's model cache ({repo} at revision {parts[2]}, {folder})"
        return f"RunPod's model cache ({folder})"
    if folder.is_relative_to(volume_root):
        return f"the volume folder {folder}"
    return f"the folder {folder}"
