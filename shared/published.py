"""Published checkpoints as their publishers ship them: the records tests take as ground truth.

Each worker keeps one JSON record per checkpoint its README names, in
handlers/<worker>/tests/published/<org>--<name>.json:

    {
      "repo": "org/name",                        hub repository (ORG/NAME), as its page spells it
      "revision": "main",                        the branch or commit the file list was read from
      "read_on": "2026-12-06",                   when it was read
      "sources": ["https://huggingface.co/org/name/tree/main", ...],      where it was read
      "license": "apache-2.0",                   the repository's licence tag
      "files": {"model.bin": 377000000, "config.json": null, ...},        every file, size in bytes or null
      "config": {"config.json": {"model_type": "..."}},                      fields the worker's code reads
      "fetch": ["model.bin", "config.json", ...],   what the populator must fetch: all the worker loads
      "notes": "what was read directly and what was inferred"
    }

The tests build a tiny model in exactly that file layout (raw, as RunPod's model cache holds it, and after
populating), start the worker on it and generate; and they check the populator's plan against `fetch`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD_FOLDER = "tests/published"


@dataclass(frozen=True)
class PublishedCheckpoint:
    repo: str
    revision: str
    read_on: str
    sources: tuple[str, ...]
    license: str
    files: dict[str, int | None]
    config: dict[str, dict[str, Any]]
    fetch: tuple[str, ...]
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def download_bytes(self) -> int | None:
        """What the populator downloads, when every fetched file's size is known."""
        sizes = [self.files[name] for name in self.fetch]
        return None if any(size is None for size in sizes) else sum(sizes)  # type: ignore[misc]


def record_path(handlers: Path, worker: str, repo: str) -> Path:
    return handlers / worker / RECORD_FOLDER / (repo.replace("/", "--") + ".json")


def load_records(handlers: Path, worker: str) -> list[PublishedCheckpoint]:
    records = []
    for path in sorted((handlers / worker / RECORD_FOLDER).glob("*.json")):
        raw = json.loads(path.read_text())
        known = {name: raw.pop(name) for name in list(raw) if name in PublishedCheckpoint.__dataclass_fields__}
        records.append(
            PublishedCheckpoint(
                **{**known, "sources": tuple(known["sources"]), "fetch": tuple(known["fetch"])}, extra=raw
            )
        )
    return records


_SHARD = re.compile(r"-\d+-of-\d+(?=\.)")  # model-00001-of-00002.safetensors
PLACEHOLDER = "placeholder for {name} of {repo}: published, never loaded by this worker\n"


def _tiny_weights(built: Path) -> dict[str, dict[str, Any]]:
    """Every tensor of a built checkpoint, by weight family (`model`, `vae/diffusion_pytorch_model`, ...)."""
    from safetensors.torch import load_file

    from shared.volume import weight_family

    families: dict[str, dict[str, Any]] = {}
    for path in sorted(built.rglob("*.safetensors")):
        name = str(path.relative_to(built))
        families.setdefault(weight_family(name), {}).update(load_file(path))
    return families


def _write_weights(tensors: dict[str, Any], names: list[str], target: Path) -> None:
    """Tensors saved under a record's names for them: one file, or shards in order plus their index;
    pickled names (`.bin`, `.pth`) with torch.save, as their publishers wrote them."""
    import torch
    from safetensors.torch import save_file

    weights = sorted(name for name in names if not name.endswith(".index.json"))
    keys = sorted(tensors)
    shard_size = -(-len(keys) // len(weights))
    weight_map = {}
    for number, name in enumerate(weights):
        shard = {key: tensors[key].contiguous() for key in keys[number * shard_size : (number + 1) * shard_size]}
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".safetensors"):
            save_file(shard, path, metadata={"format": "pt"})
        else:
            torch.save(shard, path)
        weight_map |= {key: Path(name).name for key in shard}
    for index in (name for name in names if name.endswith(".index.json")):
        total = sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
        (target / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def write_published_layout(built: Path, record: PublishedCheckpoint, target: Path) -> None:
    """A tiny checkpoint rewritten into exactly the files a record lists: its weights under the record's names
    and formats (shards, index, pickles), the built files it also lists, and a placeholder for every other
    listed file (a loader that reads one fails). Built files the record does not list are left out."""
    from shared.volume import weight_family

    families = _tiny_weights(built)
    weight_names: dict[str, list[str]] = {}
    for name in record.files:
        family = weight_family(name)
        if family in families and (name.endswith((".safetensors", ".bin", ".pth", ".pt", ".index.json"))):
            weight_names.setdefault(family, []).append(name)
    for family, names in weight_names.items():
        for format_names in _by_format(names):
            _write_weights(families[family], format_names, target)
    written = {name for names in weight_names.values() for name in names}
    for name in record.files:
        if name in written:
            continue
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if (built / name).is_file():
            path.write_bytes((built / name).read_bytes())
        else:
            placeholder = PLACEHOLDER.format(name=name, repo=record.repo)
            path.write_text("{}\n" if name.endswith(".json") else placeholder)


def _by_format(names: list[str]) -> list[list[str]]:
    """A family's files grouped by copy, each a whole set of the weights: a repository may publish them as
    safetensors and as .bin, and transformers' `variant` copies beside them (model.fp32.safetensors)."""

    def copy_of(name: str) -> str:
        return _SHARD.sub("", name.removesuffix(".index.json"))

    sharded = {copy_of(name) for name in names if _SHARD.search(name)}
    groups: dict[tuple[str, bool], list[str]] = {}
    for name in names:
        # An index belongs with its shards; a single file's leftover index (published beside it) with it.
        in_shards = bool(_SHARD.search(name)) or (name.endswith(".index.json") and copy_of(name) in sharded)
        groups.setdefault((copy_of(name), in_shards), []).append(name)
    return list(groups.values())


def write_hub_cache(folder: Path, hub_root: Path, repo: str, commit: str = "0" * 40) -> Path:
    """A folder moved into a Hugging Face cache as the hub's client writes one (RunPod's model cache is one):
    each file a blob named by its hash, the snapshot's files links to the blobs, refs/main naming the commit."""
    import hashlib

    cached = hub_root / ("models--" + repo.replace("/", "--"))
    snapshot = cached / "snapshots" / commit
    (cached / "blobs").mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        blob = cached / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        if not blob.exists():
            path.replace(blob)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (cached / "refs").mkdir(exist_ok=True)
    (cached / "refs" / "main").write_text(commit)
    return snapshot
