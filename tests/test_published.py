"""Published checkpoints load as their publishers ship them.

Each worker's records (handlers/<worker>/tests/published/*.json) list a published repository's files. For
each, the populator's plan is checked against the files the worker needs, and the worker's tiny model of the
same architecture is rewritten into exactly that file layout (names, pickles, shards and index), then served
as RunPod's model cache holds it (a hub cache snapshot of links to blobs) and after populating a volume from
that cache, with no conversion step.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from scripts.populate_volume import files_to_fetch, main
from shared import workers
from shared.errors import ModelFilesError
from shared.pipeline import Worker
from shared.published import PublishedCheckpoint, load_records, write_hub_cache, write_published_layout
from shared.settings import Settings
from shared.testing import TinyModel
from shared.volume import HUB_CACHE, RepoPiece

RECORDS = {worker: load_records(workers.HANDLERS, worker) for worker in workers.worker_names()}
ALL = [(worker, record) for worker, records in RECORDS.items() for record in records]
# Fields that say which architecture a config describes (sizes differ by design between tiny and published).
IDENTITY_FIELDS = {"model_type", "architecture", "architectures", "_class_name", "audio_channels", "num_codebooks"}


def tiny_models(worker: str) -> tuple[TinyModel, ...]:
    return workers.module(worker, "fixtures").TINY_MODELS


def tiny_for(worker: str, repo: str) -> TinyModel | None:
    claims = [tiny for tiny in tiny_models(worker) if repo in tiny.published]
    assert len(claims) <= 1, f"{repo} is claimed by {[tiny.model_id for tiny in claims]}"
    return claims[0] if claims else None


def piece_of(worker: str, repo: str) -> RepoPiece | None:
    """How a record's repository enters a model folder assembled from several (HeartMuLa's codec, say)."""
    catalog = workers.catalog(worker)
    for model in (record.repo for record in RECORDS[worker]):
        for piece in catalog.pieces(model):
            if piece.repo == repo and piece.repo != model:
                return piece
    return None


SERVED = [(worker, record) for worker, record in ALL if tiny_for(worker, record.repo) is not None]


def _id(case: tuple[str, PublishedCheckpoint]) -> str:
    return f"{case[0]}:{case[1].repo}"


@pytest.mark.unit
@pytest.mark.parametrize("case", ALL, ids=_id)
def test_record_is_complete(case):
    worker, record = case
    assert record.sources and record.read_on and record.license
    assert set(record.fetch) <= set(record.files), sorted(set(record.fetch) - set(record.files))
    served = tiny_for(worker, record.repo) is not None
    catalog = workers.catalog(worker)
    companion = any(Path(record.repo).match(pattern) for pattern in catalog.companion_models)
    why_not = record.extra.get("not_served")
    assert served or piece_of(worker, record.repo) or companion or why_not, (
        f"{record.repo}: no tiny model claims it (TinyModel.published) and the record says no reason (not_served)"
    )
    assert not (served and why_not), f"{record.repo} is served, yet its record says: {why_not}"


@pytest.mark.unit
@pytest.mark.parametrize("case", ALL, ids=_id)
def test_populator_fetches_what_the_worker_loads_and_nothing_else(case):
    worker, record = case
    piece = piece_of(worker, record.repo)
    only = piece.files if piece is not None else ()
    planned = files_to_fetch(sorted(record.files), only, workers.catalog(worker).never_loaded)
    assert sorted(planned) == sorted(record.fetch)


@pytest.mark.unit
def test_every_model_the_readme_names_has_a_record():
    for worker in workers.worker_names():
        recorded = {record.repo for record in RECORDS[worker]}
        claimed = {repo for tiny in tiny_models(worker) for repo in tiny.published}
        assert claimed <= recorded, f"{worker}: tiny models claim {sorted(claimed - recorded)} without a record"


def _disagreements(published: Any, built: Any, where: str) -> list[str]:
    if isinstance(published, dict) and isinstance(built, dict):
        return [
            problem
            for key, value in published.items()
            if key in built
            for problem in (
                _disagreements(value, built[key], f"{where}.{key}")
                if isinstance(value, dict)
                else ([] if key not in IDENTITY_FIELDS or value in (None, built[key]) else [f"{where}.{key}"])
            )
        ]
    return []


def _built_sources(worker: str, record: PublishedCheckpoint, build_root: Path) -> dict[str, Path]:
    """The tiny model of this record's architecture, built where its id would be, and what each published
    repository it is made of (its pieces, companions built beside it) is rewritten from."""
    tiny = tiny_for(worker, record.repo)
    model_folder = build_root / record.repo
    tiny.build(model_folder, "tiny")
    sources = {piece.repo: model_folder / piece.subfolder for piece in workers.catalog(worker).pieces(record.repo)}
    for other in RECORDS[worker]:
        if other.repo not in sources and (build_root / other.repo).is_dir():
            sources[other.repo] = build_root / other.repo  # built beside the model: Higgs' audio tokenizer
    return sources


@pytest.fixture(scope="module")
def published_hub(tmp_path_factory) -> Any:
    """A Hugging Face cache holding a record's repositories in their published layouts, built once per record."""
    made: dict[str, Path] = {}

    def hub_for(worker: str, record: PublishedCheckpoint) -> Path:
        if record.repo not in made:
            root = tmp_path_factory.mktemp("published")
            records = {other.repo: other for other in RECORDS[worker]}
            for repo, built in _built_sources(worker, record, root / "built").items():
                problems = _disagreements(records[repo].config, _configs(built, records[repo]), repo)
                assert not problems, f"the tiny model's config differs from the published one at {problems}"
                layout = root / "layout" / repo
                write_published_layout(built, records[repo], layout)
                write_hub_cache(layout, root / "volume" / HUB_CACHE, repo)
            made[record.repo] = root / "volume"
        return made[record.repo]

    return hub_for


def _configs(built: Path, record: PublishedCheckpoint) -> dict[str, Any]:
    return {name: json.loads((built / name).read_text()) for name in record.config if (built / name).is_file()}


def _serve(worker: str, volume: Path, model_id: str, output: Path, monkeypatch) -> dict[str, Any]:
    contract = workers.module(worker, "fixtures").CONTRACT
    for name, value in contract.extra_env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(volume_root=volume, model_id=model_id, output_dir=output)
    result = Worker(workers.adapter_class(worker), settings).run({"id": "published", "input": contract.job_input})
    assert "error" not in result, result["error"]
    assert len(result["outputs"]) == contract.output_count
    assert all(output["duration_seconds"] > 0 for output in result["outputs"])
    return result


def _single_repository(worker: str, record: PublishedCheckpoint) -> bool:
    return workers.catalog(worker).pieces(record.repo) == (RepoPiece(record.repo),)


@pytest.mark.tiny
@pytest.mark.parametrize("case", [case for case in SERVED if _single_repository(*case)], ids=_id)
def test_serves_from_the_model_cache_as_published(case, published_hub, tmp_path, monkeypatch):
    worker, record = case
    volume = published_hub(worker, record)
    snapshot = next((volume / HUB_CACHE).glob(f"models--{record.repo.replace('/', '--')}/snapshots/*"))
    assert sorted(str(path.relative_to(snapshot)) for path in snapshot.rglob("*") if not path.is_dir()) == sorted(
        record.files
    )
    _serve(worker, volume, record.repo, tmp_path, monkeypatch)


@pytest.mark.tiny
@pytest.mark.parametrize("case", SERVED, ids=_id)
def test_serves_after_populating_from_the_published_layout(case, published_hub, tmp_path, monkeypatch):
    worker, record = case
    hub = published_hub(worker, record) / HUB_CACHE
    cached = [repo.name.removeprefix("models--").replace("--", "/", 1) for repo in sorted(hub.iterdir())]
    models = [repo for repo in cached if piece_of(worker, repo) is None]  # the model and its companions
    volume = tmp_path / "volume"
    arguments = [argument for repo in models for argument in ("--model-id", repo)]
    assert main([worker, *arguments, "--hub-cache", str(hub), "--volume", str(volume)]) == 0
    records = {other.repo: other for other in RECORDS[worker]}
    catalog = workers.catalog(worker)
    folder = catalog.model_folder(volume, record.repo)
    expected = {
        str(Path(piece.subfolder) / name) for piece in catalog.pieces(record.repo) for name in records[piece.repo].fetch
    }
    assert {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()} == expected
    _serve(worker, volume, record.repo, tmp_path, monkeypatch)


@pytest.mark.unit
@pytest.mark.parametrize("worker", workers.worker_names())
def test_the_checkpoints_table_lists_what_is_served_and_each_has_a_record(worker):
    readme = (workers.HANDLERS / worker / "README.md").read_text()
    section = readme.split("\n## Checkpoints\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {repo for row in rows if "not published" not in row for repo in re.findall(r"`([\w.-]+/[\w.-]+)`", row)}
    served = {repo for tiny in tiny_models(worker) for repo in tiny.published}
    companions = {repo for repo in named if any(Path(repo).match(p) for p in workers.catalog(worker).companion_models)}
    parts = {repo for repo in named if piece_of(worker, repo) is not None}  # HeartMuLa's codec, say
    assert named - companions - parts == served
    assert named <= {record.repo for record in RECORDS[worker]}


class _Payload:
    """What a tampered pickle could run: here, it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# Every served checkpoint published with pickled weights, and its first such file.
PICKLED = [
    (worker, record, next(name for name in record.fetch if name.endswith((".bin", ".pth"))))
    for worker, record in SERVED
    if any(name.endswith((".bin", ".pth")) for name in record.fetch)
]


@pytest.mark.tiny
@pytest.mark.parametrize("case", PICKLED, ids=lambda case: f"{case[0]}:{case[1].repo}:{case[2]}")
def test_a_pickle_holding_more_than_tensors_is_refused_never_run(case, published_hub, tmp_path):
    import torch

    worker, record, pickled = case
    volume = published_hub(worker, record)
    snapshot = next((volume / HUB_CACHE).glob(f"models--{record.repo.replace('/', '--')}/snapshots/*"))
    folder = tmp_path / "volume" / worker / "org" / "tampered"
    shutil.copytree(snapshot, folder)  # the links' blobs, as files
    marker = tmp_path / "ran"
    weights = torch.load(folder / pickled, weights_only=True)
    torch.save({**weights, "payload": _Payload(marker)}, folder / pickled)
    settings = Settings(volume_root=tmp_path / "volume", model_id="org/tampered", output_dir=tmp_path)
    with pytest.raises(ModelFilesError) as refused:
        Worker(workers.adapter_class(worker), settings).start()
    assert str(refused.value) == (
        f"model folder {folder}: a pickled weight file holds more than tensors and is refused, never unpickled "
        "(it calls getattr); re-populate it from its publisher with: "
        f"python scripts/populate_volume.py {worker} --model-id org/tampered --volume {tmp_path / 'volume'}"
    )
    assert not marker.exists()


@pytest.mark.unit
def test_every_published_copy_of_the_weights_holds_every_tensor(tmp_path):
    """Shards, pickles and `variant` copies are each a whole set: a loader must not find half a model there
    (transformers would initialise the rest at random, without an error)."""
    import torch
    from safetensors.torch import load_file, save_file

    built = tmp_path / "built"
    built.mkdir()
    tensors = {f"layer{index}.weight": torch.full((2,), float(index)) for index in range(5)}
    save_file(tensors, built / "model.safetensors")
    (built / "config.json").write_text("{}")
    files = ["config.json", "model.safetensors", "model.fp32.safetensors", "pytorch_model.bin"]
    files += ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json"]
    record = PublishedCheckpoint("org/name", "main", "2026-12-06", ("here",), "mit", dict.fromkeys(files), {}, ())
    write_published_layout(built, record, tmp_path / "layout")
    layout = tmp_path / "layout"
    assert sorted(str(path.relative_to(layout)) for path in layout.rglob("*")) == sorted(files)
    for copy in ("model.safetensors", "model.fp32.safetensors"):
        assert load_file(layout / copy).keys() == tensors.keys()
    assert torch.load(layout / "pytorch_model.bin", weights_only=True).keys() == tensors.keys()
    index = json.loads((layout / "pytorch_model.bin.index.json").read_text())["weight_map"]
    assert index.keys() == tensors.keys() and set(index.values()) == set(files[4:6])
    shards = [torch.load(layout / shard, weights_only=True) for shard in files[4:6]]
    assert {key for shard in shards for key in shard} == tensors.keys()
