"""The volume populator's file selection and target paths (the download itself needs the hub), and the limits
on what --from unpacks."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scripts.populate_volume import ArchiveLimits, Hub, files_to_fetch, main, target_folder, unpack
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


ARCHIVE_WORKER = next(w for w in workers.worker_names() if workers.catalog(w).install)


@pytest.fixture
def no_extraction(monkeypatch):
    """Every refusal below must come before a single member is written."""

    def refuse(*args, **kwargs):
        raise AssertionError("the archive was unpacked")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", refuse)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as packed:
        for name, data in members.items():
            packed.writestr(name, data)
    return path


def _install(tmp_path: Path, source: str, *options: str) -> None:
    main([ARCHIVE_WORKER, "--from", source, "--volume", str(tmp_path / "volume"), *options])


def test_an_archive_unpacking_past_the_size_cap_is_refused_before_extracting(tmp_path, capsys, no_extraction):
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(8 * 1024 * 1024)})  # 8 MiB in about 8 KiB
    with pytest.raises(SystemExit):
        _install(tmp_path, str(bomb), "--max-unpacked-bytes", str(1024 * 1024))
    assert (
        f"--from: {bomb} unpacks to 8388608 bytes, over the 1048576-byte cap (--max-unpacked-bytes)"
        in capsys.readouterr().err
    )


def test_an_archive_of_too_many_entries_is_refused_before_extracting(tmp_path, capsys, no_extraction):
    many = _zip(tmp_path / "many.zip", {f"f{index}.txt": b"" for index in range(4)})
    with pytest.raises(SystemExit):
        _install(tmp_path, str(many), "--max-entries", "3")
    assert f"--from: {many} holds 4 entries, over the 3 cap (--max-entries)" in capsys.readouterr().err


def test_the_default_limits_refuse_what_no_voicebank_needs(tmp_path, no_extraction):
    many = _zip(tmp_path / "many.zip", dict.fromkeys((f"f{index}" for index in range(10_001)), b""))
    with pytest.raises(ValueError, match="holds 10001 entries, over the 10000 cap"):
        unpack(str(many), tmp_path, ArchiveLimits())


def test_a_checksum_mismatch_is_refused_before_extracting(tmp_path, capsys, no_extraction):
    archive = _zip(tmp_path / "bank.zip", {"dsconfig.yaml": b"x"})
    expected = "0" * 64
    found = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(SystemExit):
        _install(tmp_path, str(archive), "--sha256", expected)
    assert f"--sha256: {archive} has sha256 {found}, expected {expected}; not unpacked" in capsys.readouterr().err


def test_a_matching_checksum_unpacks(tmp_path):
    archive = _zip(tmp_path / "bank.zip", {"bank/dsconfig.yaml": b"x"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    unpacked = unpack(str(archive), tmp_path, ArchiveLimits(), digest)
    assert (unpacked / "bank" / "dsconfig.yaml").read_bytes() == b"x"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--from", "bank.zip", "--sha256", "abc"], "argument --sha256: must be 64 hexadecimal digits, got 'abc'"),
        (["--sha256", "a" * 64], "--sha256: checks an archive; give it with --from"),
    ],
    ids=["malformed", "without-an-archive"],
)
def test_a_malformed_or_pointless_checksum_is_refused(tmp_path, capsys, options, expected):
    with pytest.raises(SystemExit):
        main([ARCHIVE_WORKER, "--volume", str(tmp_path), *options])
    assert expected in capsys.readouterr().err


class _Endless(BaseHTTPRequestHandler):
    """Sends 3 MiB, declaring its length on /declared, and not on /undeclared (read to the end of the stream)."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        if self.path == "/declared":
            self.send_header("Content-Length", str(3 * 1024 * 1024))
        self.end_headers()
        for _ in range(3):
            self.wfile.write(bytes(1024 * 1024))

    def log_message(self, *args):
        pass


@pytest.fixture
def endless_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/declared", "is 3145728 bytes, over the 1048576-byte cap (--max-download-bytes)"),
        ("/undeclared", "sends over the 1048576-byte cap (--max-download-bytes)"),
    ],
)
def test_a_download_over_the_cap_is_refused(tmp_path, capsys, endless_server, no_extraction, path, expected):
    with pytest.raises(SystemExit):
        _install(tmp_path, f"{endless_server}{path}", "--max-download-bytes", str(1024 * 1024))
    assert f"--from: {endless_server}{path} {expected}" in capsys.readouterr().err
    assert not list((tmp_path / "volume").glob(".populate-*"))  # the partial download is gone with its folder
