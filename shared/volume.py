"""Model folders on the network volume (see network_volume_layout.md).

A model is found, in this order:
1. MODEL_DIR, when set: that folder, as it is;
2. <VOLUME_ROOT>/<handler>/<org>/<name>: the layout our populator writes;
3. <VOLUME_ROOT>/huggingface-cache/hub/models--<org>--<name>/snapshots/<revision>: RunPod's cached
   Hugging Face models (the revision refs/main names, else the only snapshot).
Runtime never reaches a hub: `enforce_offline` sets the offline variables before transformers loads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from shared.errors import ModelFilesError
from shared.settings import Settings

OFFLINE_VARIABLES = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def enforce_offline() -> None:
    os.environ.update(OFFLINE_VARIABLES)


def populate_command(handler: str, model_id: str, volume_root: Path) -> str:
    return f"python scripts/populate_volume.py {handler} --model-id {model_id} --volume {volume_root}"


def _hf_cache_snapshot(volume_root: Path, model_id: str) -> Path | None:
    repo = volume_root / "huggingface-cache" / "hub" / ("models--" + model_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshot = repo / "snapshots" / ref.read_text().strip()
        return snapshot if snapshot.is_dir() else None
    snapshots = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    return snapshots[0] if len(snapshots) == 1 else None


# transformers names its weights model.safetensors, diffusers diffusion_pytorch_model.safetensors.
_WEIGHT_NAMES = ("model.safetensors", "diffusion_pytorch_model.safetensors")


def _missing_weights(folder: Path, subfolder: str) -> list[str]:
    """Safetensors weights in `folder/subfolder`: one file, or an index whose every shard is present."""
    where = folder / subfolder
    prefix = f"{subfolder}/" if subfolder else ""
    for name in _WEIGHT_NAMES:
        index = where / f"{name}.index.json"
        if index.is_file():
            shards = set(json.loads(index.read_text())["weight_map"].values())
            return sorted(prefix + shard for shard in shards if not (where / shard).is_file())
        if (where / name).is_file():
            return []
    return [prefix + " or ".join(_WEIGHT_NAMES)]


RequiredFile = str | tuple[str, ...]  # a tuple: any one of these names will do


def _is_present(folder: Path, required: RequiredFile) -> bool:
    names = (required,) if isinstance(required, str) else required
    return any((folder / name).is_file() for name in names)


def resolve_model_dir(
    handler: str,
    model_id: str,
    settings: Settings,
    required_files: Iterable[RequiredFile],
    weight_folders: Iterable[str] = ("",),
) -> Path:
    """The folder holding a complete checkpoint, or a ModelFilesError naming the path and the fix.

    `weight_folders`: where safetensors weights must be ("" = the folder itself; a diffusers pipeline
    keeps one set per component subfolder).
    """
    command = populate_command(handler, model_id, settings.volume_root)
    if settings.model_dir is not None:
        folder = settings.model_dir
    else:
        folder = settings.volume_root / handler / model_id
        if not folder.is_dir():
            folder = _hf_cache_snapshot(settings.volume_root, model_id) or folder
    if not folder.is_dir():
        raise ModelFilesError(
            f"model folder {folder} not found (MODEL_ID={model_id}, VOLUME_ROOT={settings.volume_root}); "
            f"populate it with: {command}"
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
    return folder
