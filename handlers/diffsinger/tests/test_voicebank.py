"""Reading a bank at start-up: what the real layouts hold, and a clear start-up error for each broken part."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from handlers.diffsinger.adapter import DiffSinger
from handlers.diffsinger.tiny_bank import SPEAKERS, move_timing_to_root
from handlers.diffsinger.voicebank import load_voicebank
from shared.pipeline import Worker
from shared.serving import StartupFailure, start_worker
from shared.settings import Settings

pytestmark = pytest.mark.tiny


@pytest.fixture
def bank(tiny_volume, tmp_path) -> Path:
    """A copy of the tiny bank that a test may break."""
    folder = tmp_path / "diffsinger" / "voicebanks" / "broken"
    shutil.copytree(tiny_volume.ensure("diffsinger") / "diffsinger" / "voicebanks" / "tiny-random-bank", folder)
    return folder


def _edit_yaml(path: Path, **changes) -> None:
    path.write_text(yaml.safe_dump(yaml.safe_load(path.read_text()) | changes))


def _start_error(folder: Path) -> str:
    worker = Worker(DiffSinger, Settings(volume_root=folder.parents[2], model_id=folder.name, output_dir=folder))
    with pytest.raises(Exception) as caught:
        worker.start()
    return str(caught.value)


def test_both_real_layouts_are_read(tiny_volume):
    root = tiny_volume.ensure("diffsinger") / "diffsinger"
    main = load_voicebank(root / "voicebanks" / "tiny-random-bank", root / "vocoders")
    assert main.acoustic.speakers == SPEAKERS and main.languages == ("en", "ja")
    assert main.continuous and main.variable_depth and main.max_depth == 0.6
    assert main.key_shift_range == (-5.0, 5.0)
    assert (main.mel.mel_base, main.vocoder.mel.mel_base) == ("e", "10")  # converted between them
    assert {"": main.dictionaries[""]} == main.dictionaries and main.dictionaries[""].lookup("Hello")
    assert (
        main.dur.phonemes["<PAD>"] == 0 and main.pitch.flag("use_note_rest") and not main.variance.flag("predict_dur")
    )
    legacy = load_voicebank(root / "voicebanks" / "tiny-random-legacy", root / "vocoders")
    assert not legacy.continuous and legacy.variable_depth and legacy.max_depth == 0.4  # 400 of 1000 steps
    assert legacy.acoustic.speakers == () and legacy.pitch is None and legacy.variance is None


def test_a_vocoder_with_other_mel_parameters_is_a_start_up_error(bank):
    _edit_yaml(bank / "dsvocoder" / "vocoder.yaml", hop_size=256)
    error = _start_error(bank)
    assert error == (
        f"{bank}: the vocoder in {bank / 'dsvocoder'} does not match the acoustic model's mel parameters "
        "(hop_size 512 vs 256); use the vocoder the bank was made for"
    )


def test_a_shared_vocoder_is_found_by_name_or_named_when_missing(bank):
    vocoders = bank.parents[1] / "vocoders"
    shutil.move(bank / "dsvocoder", vocoders / "tiny_vocoder")
    assert load_voicebank(bank, vocoders).vocoder.folder == vocoders / "tiny_vocoder"
    shutil.rmtree(vocoders)
    assert _start_error(bank) == (
        f"{bank}: no dsvocoder/ in the bank and no shared vocoder {vocoders / 'tiny_vocoder' / 'vocoder.yaml'} "
        f"(dsconfig.yaml names vocoder tiny_vocoder); unzip that vocoder into {vocoders / 'tiny_vocoder'}"
    )


def test_broken_files_are_named(bank):
    (bank / "tiny.tenor.emb").write_bytes(b"\0" * 12)
    assert _start_error(bank) == f"{bank / 'tiny.tenor.emb'}: 3 float32 values, expected hidden_size 16"
    _edit_yaml(bank / "dsconfig.yaml", speakers=["tiny.alto"], acoustic="missing.onnx")
    assert (
        _start_error(bank) == f"{bank / 'dsconfig.yaml'}: acoustic names {bank / 'missing.onnx'}, which does not exist"
    )
    _edit_yaml(bank / "dsconfig.yaml", acoustic="dsvocoder/vocoder.onnx")  # a graph that takes other inputs
    assert "the acoustic graph takes mel, which this worker cannot provide" in _start_error(bank)


def test_without_dsdur_the_root_is_the_timing_model_if_it_names_one(bank):
    move_timing_to_root(bank)
    read = load_voicebank(bank, bank.parents[1] / "vocoders")
    assert read.dur is read.acoustic and read.dictionaries[""].lookup("hello")  # the dsdict.yaml beside it
    assert read.pitch.folder == bank / "dspitch"  # the other stages keep their own folders
    _edit_yaml(bank / "dsconfig.yaml", dur=None)
    assert load_voicebank(bank, bank.parents[1] / "vocoders").dur is None


def test_a_broken_main_dictionary_is_a_start_up_error(bank):
    main = bank / "dsdur" / "dsdict.yaml"  # every language without a dictionary of its own reads it
    main.write_text("symbols: []\n")
    assert _start_error(bank) == f"{main}: no symbols and no entries"
    main.write_text("entries: [unclosed")
    assert _start_error(bank).startswith(f"{main}: not readable YAML")


def test_a_broken_bank_is_the_answer_of_every_job(bank, monkeypatch):
    (bank / "dsconfig.yaml").write_text("acoustic: [unclosed")
    monkeypatch.setenv("VOLUME_ROOT", str(bank.parents[2]))
    monkeypatch.setenv("MODEL_ID", bank.name)
    started = start_worker(DiffSinger)
    assert isinstance(started, StartupFailure)
    assert started.error.startswith(f"{bank / 'dsconfig.yaml'}: not readable YAML")


def test_the_seeds_model_path_variable_names_the_bank(bank, monkeypatch, tmp_path):
    monkeypatch.setenv("VOLUME_ROOT", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("DIFFSINGER_MODEL_PATH", str(bank))
    started = start_worker(DiffSinger)
    assert not isinstance(started, StartupFailure), started.error
    assert started.check_volume() == bank
