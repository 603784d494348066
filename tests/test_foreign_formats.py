"""Checkpoints published in a format a worker does not load: refused at start-up with the command that converts
them, converted by the populator into a folder that appears whole or not at all; renamed repositories found under
any of their names. The mechanism only, on a made-up format; each worker's own converters are tested in its folder
(handlers/*/tests/test_convert.py) and against its authors' code (make test-reference)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from scripts.populate_volume import CONVERSION_LOG, installed_models, main, place
from shared import workers
from shared.errors import ModelFilesError
from shared.volume import HUB_CACHE, ForeignFormat, VolumeCatalog, resolve_model_dir

pytestmark = pytest.mark.unit

REQUIRED = ("config.json",)


def _recognise(folder: Path) -> bool:
    return (folder / "legacy_config.json").is_file()


def _convert(source: Path, destination: Path) -> list[str]:
    legacy = json.loads((source / "legacy_config.json").read_text())
    if "dim" not in legacy:
        raise ValueError(f"{source / 'legacy_config.json'}: no 'dim'")
    (destination / "config.json").write_text(json.dumps({"hidden_size": legacy["dim"]}))
    (destination / "model.safetensors").write_bytes((source / "weights.bin").read_bytes())
    return ["legacy_config.json dim -> config.json hidden_size", "weights.bin -> model.safetensors"]


LEGACY = ForeignFormat("the legacy format (legacy_config.json)", _recognise, _convert)


def legacy_checkpoint(folder: Path, dim: int | None = 8) -> Path:
    folder.mkdir(parents=True)
    (folder / "legacy_config.json").write_text(json.dumps({} if dim is None else {"dim": dim}))
    (folder / "weights.bin").write_bytes(b"weights")
    return folder


def converted_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def resolve(volume: Path, model_id: str = "org/name", **options) -> Path:
    return resolve_model_dir("worker", model_id, volume, REQUIRED, formats=(LEGACY,), **options)


def test_a_volume_folder_in_a_foreign_format_is_refused_with_the_command_that_converts_it_in_place(tmp_path):
    folder = legacy_checkpoint(tmp_path / "worker" / "org" / "name")
    with pytest.raises(ModelFilesError) as caught:
        resolve(tmp_path)
    assert str(caught.value) == (
        f"model folder {folder} holds the legacy format (legacy_config.json), which this worker does not load; "
        f"convert it with: python scripts/populate_volume.py worker --model-id org/name --volume {tmp_path} "
        f"--from {folder}"
    )


def test_a_model_cache_snapshot_in_a_foreign_format_is_converted_from_the_cache(tmp_path):
    repo = tmp_path / HUB_CACHE / "models--org--name"
    legacy_checkpoint(repo / "snapshots" / "abc123")
    with pytest.raises(ModelFilesError, match=rf"--volume {tmp_path} --hub-cache {tmp_path / HUB_CACHE}$"):
        resolve(tmp_path)


def test_model_dir_in_a_foreign_format_says_where_the_converted_folder_will_be(tmp_path):
    folder = legacy_checkpoint(tmp_path / "elsewhere")
    with pytest.raises(ModelFilesError) as caught:
        resolve(tmp_path, explicit_dir=folder)
    assert str(caught.value).endswith(f"--from {folder} (then point MODEL_DIR at {tmp_path}/worker/org/name)")


def test_the_loaded_format_is_not_mistaken_for_a_foreign_one(tmp_path):
    folder = converted_checkpoint(tmp_path / "worker" / "org" / "name")
    assert resolve(tmp_path) == folder


@pytest.mark.parametrize("present", ["old-org/old-name", "org/name"])
@pytest.mark.parametrize("where", ["volume", "model cache"])
def test_a_renamed_repository_is_found_under_either_name(tmp_path, present, where):
    catalog = VolumeCatalog("worker", "org/name", ("org/name",), REQUIRED, renamed=(("org/name", "old-org/old-name"),))
    org, name = present.split("/")
    if where == "volume":
        folder = converted_checkpoint(tmp_path / "worker" / org / name)
    else:
        folder = converted_checkpoint(tmp_path / HUB_CACHE / f"models--{org}--{name}" / "snapshots" / "abc")
    for model_id in ("org/name", "old-org/old-name"):
        found = resolve_model_dir(
            "worker", model_id, tmp_path, REQUIRED, other_names=catalog.names(model_id)[1:], formats=(LEGACY,)
        )
        assert found == folder


def test_the_volume_folder_wins_over_a_snapshot_under_another_name(tmp_path):
    """A converted folder under the new name serves before the cache's original under the old one."""
    legacy_checkpoint(tmp_path / HUB_CACHE / "models--old--name" / "snapshots" / "abc")
    folder = converted_checkpoint(tmp_path / "worker" / "new" / "name")
    assert resolve(tmp_path, "old/name", other_names=("new/name",)) == folder


def test_names_of_an_unrenamed_repository_are_its_own():
    catalog = VolumeCatalog("worker", "a/b", ("a/b",), REQUIRED, renamed=(("c/d", "e/f"),))
    assert catalog.names("a/b") == ("a/b",)
    assert catalog.names("e/f") == ("e/f", "c/d")


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The populator's scratch folder beside the worker's models."""
    folder = tmp_path / "worker" / ".populate-x"
    folder.mkdir(parents=True)
    return folder


def test_conversion_replaces_the_folder_whole_and_logs_what_was_mapped(tmp_path, scratch, capsys):
    source = legacy_checkpoint(tmp_path / "download")
    target = tmp_path / "worker" / "org" / "name"
    converted_checkpoint(target)
    (target / "stale.bin").write_bytes(b"from the previous checkpoint")
    place((LEGACY,), source, target, scratch)
    assert sorted(path.name for path in target.iterdir()) == ["config.json", CONVERSION_LOG, "model.safetensors"]
    assert json.loads((target / "config.json").read_text()) == {"hidden_size": 8}
    log = (target / CONVERSION_LOG).read_text().splitlines()
    assert log[0] == f"converted from the legacy format (legacy_config.json) at {source}"
    assert log[1:3] == ["legacy_config.json dim -> config.json hidden_size", "weights.bin -> model.safetensors"]
    assert log[3].startswith("in ") and log[3].endswith(" s")
    assert "weights.bin -> model.safetensors" in capsys.readouterr().out
    assert sorted(path.name for path in source.iterdir()) == ["legacy_config.json", "weights.bin"]  # left as it was
    assert resolve(tmp_path) == target


def test_a_failed_conversion_leaves_the_previous_folder_as_it_was(tmp_path, scratch):
    source = legacy_checkpoint(tmp_path / "download", dim=None)
    target = converted_checkpoint(tmp_path / "worker" / "org" / "name")
    with pytest.raises(ValueError, match=r"converting .*download \(the legacy format .*\) failed: .*no 'dim'"):
        place((LEGACY,), source, target, scratch)
    assert sorted(path.name for path in target.iterdir()) == ["config.json", "model.safetensors"]


def test_a_folder_converts_in_place(tmp_path, scratch):
    target = legacy_checkpoint(tmp_path / "worker" / "org" / "name")
    place((LEGACY,), target, target, scratch)
    assert (target / "config.json").is_file() and not (target / "legacy_config.json").exists()
    assert resolve(tmp_path) == target


def test_a_folder_already_in_the_loaded_format_is_copied_not_moved(tmp_path, scratch):
    source = converted_checkpoint(tmp_path / "download")
    target = tmp_path / "worker" / "org" / "name"
    place((LEGACY,), source, target, scratch)
    assert (source / "config.json").is_file() and (target / "config.json").is_file()
    assert not (target / CONVERSION_LOG).exists()


@pytest.fixture
def legacy_worker(monkeypatch) -> str:
    """A real worker's command line, its catalog given the legacy format."""
    catalog = dataclasses.replace(workers.catalog("musicgen"), formats=(LEGACY,))
    monkeypatch.setattr(workers, "catalog", lambda worker: catalog)
    return "musicgen"


def test_the_populator_converts_a_local_folder(tmp_path, legacy_worker, capsys):
    source = legacy_checkpoint(tmp_path / "download")
    volume = tmp_path / "volume"
    assert main([legacy_worker, "--from", str(source), "--model-id", "org/name", "--volume", str(volume)]) == 0
    target = volume / legacy_worker / "org" / "name"
    assert sorted(path.name for path in target.iterdir()) == ["config.json", CONVERSION_LOG, "model.safetensors"]
    assert [path.name for path in (volume / legacy_worker).iterdir()] == ["org"]  # no scratch folder left
    assert f"installed {target}" in capsys.readouterr().out


def test_a_local_folder_needs_the_model_id_it_is(tmp_path, legacy_worker, capsys):
    source = legacy_checkpoint(tmp_path / "download")
    with pytest.raises(SystemExit):
        main([legacy_worker, "--from", str(source), "--volume", str(tmp_path / "volume")])
    assert "--from FOLDER: give one --model-id" in capsys.readouterr().err


def test_the_populator_converts_from_a_model_cache(tmp_path, legacy_worker):
    cache = tmp_path / "cache"
    snapshot = legacy_checkpoint(cache / "models--org--name" / "snapshots" / "abc")
    (cache / "models--org--name" / "refs").mkdir()
    (cache / "models--org--name" / "refs" / "main").write_text("abc")
    volume = tmp_path / "volume"
    main([legacy_worker, "--model-id", "org/name", "--hub-cache", str(cache), "--volume", str(volume)])
    target = volume / legacy_worker / "org" / "name"
    assert (target / "model.safetensors").read_bytes() == (snapshot / "weights.bin").read_bytes()
    assert (target / CONVERSION_LOG).read_text().startswith("converted from the legacy format")


def test_verify_lists_a_cached_checkpoint_to_convert_so_its_failure_shows(tmp_path, legacy_worker):
    legacy_checkpoint(tmp_path / HUB_CACHE / "models--org--name" / "snapshots" / "abc")
    legacy_checkpoint(tmp_path / HUB_CACHE / "models--other--thing" / "snapshots" / "abc")
    (tmp_path / HUB_CACHE / "models--other--thing" / "snapshots" / "abc" / "legacy_config.json").unlink()
    assert installed_models(legacy_worker, tmp_path) == ["org/name"]
