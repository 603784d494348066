"""The operator's volume check (`populate_volume.py <worker> --verify`): every installed checkpoint started as
the worker starts it, then one short job, printed as a table of OK or the error with its fix."""

from __future__ import annotations

import shutil

import pytest

from scripts.populate_volume import main
from shared import workers
from shared.published import write_hub_cache
from shared.volume import HUB_CACHE

pytestmark = pytest.mark.tiny


def _table(output: str) -> dict[str, tuple[str, str]]:
    header, *rows = output.strip().splitlines()
    assert header.split() == ["checkpoint", "result", "details"]
    return {model_id: (status, details) for model_id, status, details in (row.split(maxsplit=2) for row in rows)}


@pytest.mark.parametrize("worker", workers.worker_names())
def test_every_tiny_checkpoint_passes(worker, tiny_volume, capsys):
    volume = tiny_volume.ensure(worker)
    capsys.readouterr()  # the builder's lines
    assert main([worker, "--verify", "--volume", str(volume)]) == 0
    table = _table(capsys.readouterr().out)
    tiny_ids = {tiny.model_id for tiny in workers.module(worker, "fixtures").TINY_MODELS}
    assert set(table) == tiny_ids
    for status, details in table.values():
        assert status == "OK" and "s of audio in" in details


def test_a_broken_folder_is_named_with_its_fix_and_the_rest_still_checked(tiny_volume, tmp_path, capsys):
    built = tiny_volume.ensure("musicgen") / "musicgen" / "tiny-random" / "musicgen"
    volume = tmp_path / "volume"
    shutil.copytree(built, volume / "musicgen" / "org" / "good")
    broken = shutil.copytree(built, volume / "musicgen" / "org" / "broken")
    (broken / "model.safetensors").unlink()
    cached = shutil.copytree(built, tmp_path / "cached")
    write_hub_cache(cached, volume / HUB_CACHE, "facebook/musicgen-small")  # RunPod's model cache counts too
    capsys.readouterr()
    assert main(["musicgen", "--verify", "--volume", str(volume)]) == 1
    table = _table(capsys.readouterr().out)
    assert set(table) == {"org/broken", "org/good", "facebook/musicgen-small"}
    assert table["org/good"][0] == table["facebook/musicgen-small"][0] == "OK"
    status, details = table["org/broken"]
    assert status == "FAILED"
    assert details == (
        f"start-up failed: model folder {volume}/musicgen/org/broken is incomplete, missing: model.safetensors or "
        "pytorch_model.bin or diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin; re-populate it "
        f"with: python scripts/populate_volume.py musicgen --model-id org/broken --volume {volume}"
    )


def test_an_empty_volume_says_how_to_fill_it(tmp_path, capsys):
    assert main(["voxcpm", "--verify", "--volume", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip() == (
        f"no voxcpm checkpoint on {tmp_path}: populate one with "
        f"python scripts/populate_volume.py voxcpm --model-id <ORG/NAME> --volume {tmp_path}"
    )
