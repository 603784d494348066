"""The populator assembles heartlib's checkpoint layout from three hub repositories (the hub itself is out of
reach here: its two calls are recorded instead)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest

from scripts.populate_volume import Hub, populate

pytestmark = pytest.mark.unit
LISTED = {
    "HeartMuLa/HeartMuLaGen": [".gitattributes", "README.md", "gen_config.json", "tokenizer.json", "other.bin"],
    "HeartMuLa/HeartMuLa-oss-3B-happy-new-year": [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ],
    "HeartMuLa/HeartMuLa-oss-3B": ["config.json", "model.safetensors"],
    "HeartMuLa/HeartCodec-oss-20260123": ["config.json", "model.safetensors", "pytorch_model.bin"],
    "HeartMuLa/HeartCodec-oss": ["config.json", "model.safetensors"],
}


@pytest.fixture
def downloads(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []

    class Hub:
        def list_repo_files(self, repo_id: str, revision: str | None = None) -> list[str]:
            return LISTED[repo_id]

    def snapshot_download(repo_id, revision, local_dir, allow_patterns):
        calls.append((repo_id, revision, Path(local_dir), allow_patterns))
        Path(local_dir).mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(huggingface_hub, "HfApi", Hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def test_the_default_checkpoint_is_assembled_with_its_codec(tmp_path, downloads):
    folder = tmp_path / "heartmula" / "HeartMuLa" / "HeartMuLa-oss-3B-happy-new-year"
    assert populate("heartmula", ("HeartMuLa/HeartMuLa-oss-3B-happy-new-year",), tmp_path, "v1", Hub()) == [folder]
    assert downloads == [
        ("HeartMuLa/HeartMuLaGen", None, folder, ["gen_config.json", "tokenizer.json"]),
        ("HeartMuLa/HeartMuLa-oss-3B-happy-new-year", "v1", folder / "HeartMuLa-oss-3B", LISTED[downloads[1][0]]),
        ("HeartMuLa/HeartCodec-oss-20260123", None, folder / "HeartCodec-oss", ["config.json", "model.safetensors"]),
    ]


def test_the_first_release_gets_the_codec_released_with_it(tmp_path, downloads):
    populate("heartmula", ("HeartMuLa/HeartMuLa-oss-3B",), tmp_path, None, Hub())
    assert [repo for repo, *_ in downloads] == [
        "HeartMuLa/HeartMuLaGen",
        "HeartMuLa/HeartMuLa-oss-3B",
        "HeartMuLa/HeartCodec-oss",
    ]
