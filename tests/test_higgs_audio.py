"""Higgs Audio V2: transcript chunking, the prompt format, and the static-cache switch, in process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from handlers.higgs_audio.higgs_audio import HiggsAudio, HiggsAudioRequest, build_prompt, split_transcript

from shared.audio import Audio
from shared.pipeline import Worker
from shared.schemas import parse_request
from shared.settings import Settings

CAP = 1_000_000


def _request(**fields) -> HiggsAudioRequest:
    return parse_request(HiggsAudioRequest, fields, CAP)


def test_speaker_chunks_group_turns_and_keep_a_preamble():
    transcript = "Narrator intro. [SPEAKER0] One. [SPEAKER1] Two. [SPEAKER0] Three."
    assert split_transcript(_request(transcript=transcript, chunk_method="speaker")) == [
        "Narrator intro.",
        "[SPEAKER0] One.",
        "[SPEAKER1] Two.",
        "[SPEAKER0] Three.",
    ]
    grouped = _request(transcript=transcript, chunk_method="speaker", chunk_max_num_turns=2)
    assert split_transcript(grouped) == ["Narrator intro.\n[SPEAKER0] One.", "[SPEAKER1] Two.\n[SPEAKER0] Three."]


def test_word_chunks_respect_paragraphs():
    transcript = "a b c d e\n\nf g"
    assert split_transcript(_request(transcript=transcript, chunk_method="word", chunk_max_word_num=3)) == [
        "a b c",
        "d e",
        "f g",
    ]
    assert split_transcript(_request(transcript=transcript)) == [transcript]


def test_prompt_format():
    reference = Audio(np.zeros((10, 1), np.float32), 24000)
    assert build_prompt("Rain outside.", [("Hi.", reference)], "Bye.") == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Generate audio following instruction.\n\n<|scene_desc_start|>\nRain outside.\n<|scene_desc_end|><|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|><|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nBye.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>"
    )


def test_reference_audio_labels_skip_presets():
    request = _request(transcript="[SPEAKER0] a [SPEAKER1] b", ref_audio=["demo_voice", "QUJDRA" * 20])
    assert list(request.input_audio()) == ["ref_audio.1"]


@pytest.mark.parametrize("static", ["0", "1"])
def test_static_cache_switch(tiny_volume: Path, tmp_path: Path, monkeypatch, static):
    monkeypatch.setenv("HIGGS_AUDIO_STATIC_CACHE", static)
    settings = Settings(volume_root=tiny_volume, model_id="tiny-random/higgs-audio-v2-generation", output_dir=tmp_path)
    result = Worker(HiggsAudio, settings).run(
        {"id": "static", "input": {"transcript": "Static or dynamic.", "max_new_tokens": 60, "seed": 2}}
    )
    assert "error" not in result, result
    assert result["details"]["static_cache"] is (static == "1")
    assert result["details"]["chunks"][0]["frames"] > 0


def test_a_bad_static_cache_value_names_the_variable(tiny_volume: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HIGGS_AUDIO_STATIC_CACHE", "yes please")
    settings = Settings(volume_root=tiny_volume, model_id="tiny-random/higgs-audio-v2-generation", output_dir=tmp_path)
    result = Worker(HiggsAudio, settings).run({"id": "x", "input": {"transcript": "x"}})
    assert result == {"error": "environment variable HIGGS_AUDIO_STATIC_CACHE must be 0/1/true/false, got 'yes please'"}
