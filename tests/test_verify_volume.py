"""The operator's volume check (`populate_volume.py <worker> --verify`): every installed checkpoint started as
the worker starts it, then one short job, printed as a table of OK or the error with its fix."""

from __future__ import annotations

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


@pytest.mark.parametrize(
    "worker", [worker for worker in workers.worker_names() if workers.catalog(worker).repositories]
)
def test_a_broken_folder_is_named_with_its_fix_and_the_rest_still_checked(worker, tmp_path, capsys):
    catalog = workers.catalog(worker)
    tiny = workers.module(worker, "fixtures").TINY_MODELS[0]
    volume = tmp_path / "volume"
    for model_id in ("org/good", "org/broken"):
        tiny.build(catalog.model_folder(volume, model_id), "tiny")
    cached = tmp_path / "cached" / "org" / "cached"
    tiny.build(cached, "tiny")
    write_hub_cache(cached, volume / HUB_CACHE, "org/cached")  # RunPod's model cache counts too
    required = catalog.required_files[0]
    (catalog.model_folder(volume, "org/broken") / required).unlink()
    capsys.readouterr()
    assert main([worker, "--verify", "--volume", str(volume)]) == 1
    table = _table(capsys.readouterr().out)
    assert set(table) == {"org/broken", "org/good", "org/cached"}
    assert table["org/good"][0] == table["org/cached"][0] == "OK"
    assert table["org/broken"] == (
        "FAILED",
        f"start-up failed: model folder {catalog.model_folder(volume, 'org/broken')} is incomplete, missing: "
        f"{required}; re-populate it with: python scripts/populate_volume.py {worker} --model-id org/broken "
        f"--volume {volume}",
    )


@pytest.mark.parametrize("worker", workers.worker_names())
def test_an_empty_volume_says_how_to_fill_it(worker, tmp_path, capsys):
    assert main([worker, "--verify", "--volume", str(tmp_path)]) == 1
    source = "--from ARCHIVE.zip" if workers.catalog(worker).install else "--model-id <ORG/NAME>"
    assert capsys.readouterr().out.strip() == (
        f"no {worker} checkpoint on {tmp_path}: populate one with "
        f"python scripts/populate_volume.py {worker} {source} --volume {tmp_path}"
    )
