"""The volume populator's file selection and target paths (the download itself needs the hub)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.populate_volume import Hub, files_to_fetch, main, target_folder
from shared import workers

pytestmark = pytest.mark.unit

# The file list of facebook/musicgen-small as published.
MUSICGEN_SMALL = [
    ".gitattributes",
    "README.md",
    "compression_state_dict.bin",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "pytorch_model.bin",
    "special_tokens_map.json",
    "spiece.model",
    "state_dict.bin",
    "tokenizer.json",
    "tokenizer_config.json",
]


def test_legacy_bin_duplicates_are_skipped():
    assert files_to_fetch(MUSICGEN_SMALL, never_loaded=("state_dict.bin", "compression_state_dict.bin")) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "special_tokens_map.json",
        "spiece.model",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


def test_bin_weights_are_kept_when_they_are_the_only_weights():
    assert "pytorch_model.bin" in files_to_fetch(["config.json", "pytorch_model.bin"])


def test_target_follows_the_layout():
    assert target_folder(Path("/runpod-volume"), "musicgen", "facebook/musicgen-small") == Path(
        "/runpod-volume/musicgen/facebook/musicgen-small"
    )


@pytest.mark.parametrize("bad", ["musicgen-small", "a/b/c", "../x", "org/.."])
def test_malformed_model_ids_are_refused_before_any_download(bad, capsys):
    with pytest.raises(SystemExit):
        main(["musicgen", "--model-id", bad, "--volume", "/tmp/v"])
    assert "model id must look like ORG/NAME" in capsys.readouterr().err


@pytest.mark.parametrize("worker", [w for w in workers.worker_names() if workers.catalog(w).repositories])
def test_each_worker_populates_its_catalog_repositories(monkeypatch, worker):
    calls = []
    monkeypatch.setattr("scripts.populate_volume.populate", lambda *args: calls.append(args))  # the hub is out of reach
    assert main([worker, "--volume", "/runpod-volume"]) == 0
    repositories = workers.catalog(worker).repositories
    assert repositories[0] == workers.catalog(worker).default_model_id
    [(called_worker, called_repositories, volume, revision, source)] = calls
    assert (called_worker, called_repositories, volume, revision) == (
        worker,
        repositories,
        Path("/runpod-volume"),
        None,
    )
    assert isinstance(source, Hub)


@pytest.mark.parametrize("worker", [w for w in workers.worker_names() if workers.catalog(w).install])
def test_a_worker_of_archives_asks_for_one(worker, capsys):
    with pytest.raises(SystemExit):
        main([worker, "--volume", "/runpod-volume"])
    assert f"{worker}: its models come as archives; give --from FILE_OR_URL" in capsys.readouterr().err
