"""Model folder resolution: our layout, RunPod's Hugging Face cache, MODEL_DIR, and clear failures."""

import json
from pathlib import Path

import pytest

from shared.errors import ModelFilesError
from shared.volume import resolve_model_dir

pytestmark = pytest.mark.unit

REQUIRED = ("config.json", ("preprocessor_config.json", "processor_config.json"))


def make_checkpoint(folder: Path, sharded: bool = False) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "processor_config.json").write_text("{}")
    if sharded:
        shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
        for shard in shards.values():
            (folder / shard).write_bytes(b"")
    else:
        (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_layout_path(tmp_path):
    folder = make_checkpoint(tmp_path / "musicgen" / "facebook" / "musicgen-small")
    assert resolve_model_dir("musicgen", "facebook/musicgen-small", tmp_path, REQUIRED) == folder


def test_runpod_hf_cache_snapshot_named_by_refs_main(tmp_path):
    repo = tmp_path / "huggingface-cache" / "hub" / "models--facebook--musicgen-small"
    make_checkpoint(repo / "snapshots" / "old111")
    current = make_checkpoint(repo / "snapshots" / "abc123", sharded=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123\n")
    assert resolve_model_dir("musicgen", "facebook/musicgen-small", tmp_path, REQUIRED) == current


def test_explicit_model_dir_wins(tmp_path):
    folder = make_checkpoint(tmp_path / "anywhere")
    make_checkpoint(tmp_path / "musicgen" / "org" / "name")
    assert resolve_model_dir("musicgen", "org/name", tmp_path, REQUIRED, explicit_dir=folder) == folder


def test_missing_folder_names_path_and_command(tmp_path):
    with pytest.raises(ModelFilesError) as caught:
        resolve_model_dir("musicgen", "org/name", tmp_path, REQUIRED)
    assert str(caught.value) == (
        f"model folder {tmp_path}/musicgen/org/name not found (MODEL_ID=org/name, VOLUME_ROOT={tmp_path}); "
        f"populate it with: python scripts/populate_volume.py musicgen --model-id org/name --volume {tmp_path}"
    )


def test_incomplete_folder_lists_what_is_missing(tmp_path):
    folder = make_checkpoint(tmp_path / "musicgen" / "org" / "name", sharded=True)
    (folder / "model-00002-of-00002.safetensors").unlink()
    (folder / "processor_config.json").unlink()
    with pytest.raises(
        ModelFilesError,
        match=r"missing: preprocessor_config.json or processor_config.json, "
        r"model-00002-of-00002.safetensors; re-populate it with",
    ):
        resolve_model_dir("musicgen", "org/name", tmp_path, REQUIRED)


def test_unreadable_files_are_named_with_the_fix():
    """As the images' unprivileged user: a 0600 file written by root reads as 'not found' in the libraries."""
    import os
    import shutil
    import tempfile

    from shared.volume import make_readable

    base = Path(tempfile.mkdtemp())  # outside pytest's 0700 folders, so another user can enter it
    try:
        base.chmod(0o755)
        folder = make_checkpoint(base / "musicgen" / "org" / "name")
        (folder / "model.safetensors").chmod(0o600 if os.getuid() == 0 else 0o000)
        as_nobody = os.getuid() == 0  # root reads everything: look as an image's unprivileged user would
        if as_nobody:
            os.seteuid(65534)
        try:
            with pytest.raises(ModelFilesError) as caught:
                resolve_model_dir("musicgen", "org/name", base, ("config.json",))
        finally:
            if as_nobody:
                os.seteuid(0)
        assert str(caught.value).endswith(
            f"cannot read, e.g. musicgen/org/name/model.safetensors; make them readable with: chmod -R a+rX {folder}"
        ) or "cannot read, e.g. model.safetensors; make them readable with: chmod -R a+rX" in str(caught.value)
        make_readable(base)
        assert (folder / "model.safetensors").stat().st_mode & 0o444 == 0o444
        assert resolve_model_dir("musicgen", "org/name", base, ("config.json",)) == folder
    finally:
        shutil.rmtree(base)
