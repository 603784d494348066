"""Installing voicebanks and vocoders from zip files or URLs with the populator, checked as the worker reads them."""

from __future__ import annotations

import http.server
import shutil
import threading
import zipfile
from pathlib import Path

import pytest
import yaml

from handlers.diffsinger.tiny_bank import write_oudep
from handlers.diffsinger.voicebank import load_voicebank
from scripts.populate_volume import main

pytestmark = pytest.mark.tiny


def _zip(folder: Path, archive: Path, inside: str) -> Path:
    """The folder zipped as OpenUtau packages ship: under one top folder named `inside`, or at the top ("")."""
    with zipfile.ZipFile(archive, "w") as packed:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                packed.write(path, (Path(inside) / path.relative_to(folder)).as_posix())
    return archive


def _rename_vocoder(vocoder: Path, name: str) -> None:
    config = vocoder / "vocoder.yaml"
    config.write_text(yaml.safe_dump(yaml.safe_load(config.read_text()) | {"name": name}))


@pytest.fixture
def packages(tiny_volume, tmp_path) -> dict[str, Path]:
    """The tiny bank as a zip without its vocoder, and that vocoder as a zip of its own."""
    bank = tmp_path / "src" / "Tiny Bank"
    shutil.copytree(tiny_volume.ensure("diffsinger") / "diffsinger" / "voicebanks" / "tiny-random-bank", bank)
    vocoder = tmp_path / "src" / "tiny_vocoder"
    shutil.move(bank / "dsvocoder", vocoder)
    return {"bank": _zip(bank, tmp_path / "bank.zip", "Tiny Bank"), "vocoder": _zip(vocoder, tmp_path / "voc.zip", "x")}


def test_a_bank_needing_a_shared_vocoder_then_the_vocoder(packages, tmp_path, capsys):
    volume = tmp_path / "volume"
    assert main(["diffsinger", "--from", str(packages["bank"]), "--volume", str(volume)]) == 1
    bank = volume / "diffsinger" / "voicebanks" / "Tiny Bank"
    assert (bank / "dsconfig.yaml").is_file()
    assert f"installed, but the worker cannot use it: {bank}: no dsvocoder/ in the bank" in capsys.readouterr().err
    assert main(["diffsinger", "--from", str(packages["vocoder"]), "--volume", str(volume)]) == 0
    assert (volume / "diffsinger" / "vocoders" / "tiny_vocoder" / "vocoder.yaml").is_file()  # named by its yaml
    assert not list(volume.glob(".populate-*"))  # the unpacked archive is gone
    with pytest.raises(SystemExit):  # installing over a bank is refused
        main(["diffsinger", "--from", str(packages["bank"]), "--volume", str(volume)])
    assert "already exists: remove it first, or install under another --name" in capsys.readouterr().err
    assert main(["diffsinger", "--from", str(packages["bank"]), "--name", "alto", "--volume", str(volume)]) == 0
    assert (volume / "diffsinger" / "voicebanks" / "alto" / "dsconfig.yaml").stat().st_mode & 0o444 == 0o444


def test_a_vocoder_package_is_named_by_its_oudep_yaml_as_openutau_names_it(packages, tmp_path):
    volume = tmp_path / "volume"
    assert main(["diffsinger", "--from", str(packages["bank"]), "--volume", str(volume)]) == 1  # no vocoder yet
    vocoder = tmp_path / "src" / "tiny_vocoder"
    _rename_vocoder(vocoder, "nsf_hifigan")  # vocoder.yaml's own name is not what banks give
    write_oudep(vocoder, "tiny_vocoder")
    assert main(["diffsinger", "--from", str(_zip(vocoder, tmp_path / "v.oudep", "")), "--volume", str(volume)]) == 0
    vocoders = volume / "diffsinger" / "vocoders"
    assert [folder.name for folder in vocoders.iterdir()] == ["tiny_vocoder"]
    assert load_voicebank(volume / "diffsinger" / "voicebanks" / "Tiny Bank", vocoders).vocoder.folder.name == (
        "tiny_vocoder"
    )


@pytest.mark.parametrize(
    ("file", "bad_name"),
    [
        ("vocoder.yaml", lambda root: "../../../escaped"),
        ("oudep.yaml", lambda root: str(root / "escaped")),  # an absolute path would replace vocoders/ whole
        ("oudep.yaml", lambda root: ".."),
    ],
    ids=["climbing", "absolute", "parent"],
)
def test_a_vocoder_name_that_is_no_folder_name_is_refused(packages, tmp_path, capsys, file, bad_name):
    vocoder = tmp_path / "src" / "tiny_vocoder"
    if file == "oudep.yaml":
        write_oudep(vocoder, bad_name(tmp_path))
    else:
        _rename_vocoder(vocoder, bad_name(tmp_path))
    volume = tmp_path / "volume"
    with pytest.raises(SystemExit):
        main(["diffsinger", "--from", str(_zip(vocoder, tmp_path / "v.zip", "x")), "--volume", str(volume)])
    key = "id" if file == "oudep.yaml" else "name"
    assert f"{file} {key}: must be one folder name of letters, digits, '.', '_' and '-'" in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists()
    assert not (volume / "diffsinger" / "vocoders").exists()  # nothing moved anywhere


def test_a_bank_from_a_url(packages, tmp_path, capsys):
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        volume = tmp_path / "volume"
        assert main(["diffsinger", "--from", f"{url}/voc.zip", "--volume", str(volume)]) == 0
        assert main(["diffsinger", "--from", f"{url}/bank.zip", "--name", "b", "--volume", str(volume)]) == 0
        assert f"installed {volume / 'diffsinger' / 'voicebanks' / 'b'}" in capsys.readouterr().out
    finally:
        server.shutdown()
        server.server_close()


def test_unsafe_or_wrong_archives_are_refused(tmp_path, capsys):
    escaping = tmp_path / "evil.zip"
    with zipfile.ZipFile(escaping, "w") as packed:
        packed.writestr("../../outside.txt", "x")
    (tmp_path / "notes.txt").write_text("not a zip")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as packed:
        packed.writestr("readme.txt", "nothing to install")
    for source, expected in (
        (escaping, "holds '../../outside.txt', which points outside the archive"),
        (tmp_path / "notes.txt", "is not a zip file"),
        (empty, "the archive holds no voicebank (dsconfig.yaml) and no vocoder (vocoder.yaml)"),
    ):
        with pytest.raises(SystemExit):
            main(["diffsinger", "--from", str(source), "--volume", str(tmp_path / "volume")])
        assert expected in capsys.readouterr().err
    assert not (tmp_path.parent / "outside.txt").exists()
