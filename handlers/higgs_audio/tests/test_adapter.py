"""Higgs Audio in process: the static-cache variable reaches generation; the tokenizer is checked at start-up."""

from __future__ import annotations

import pytest

from handlers.higgs_audio.adapter import HiggsAudio
from handlers.higgs_audio.config import HiggsAudioConfig
from shared.errors import ModelFilesError
from shared.pipeline import Worker
from shared.settings import Settings

pytestmark = pytest.mark.tiny


def _settings(tiny_volume, tmp_path) -> Settings:
    volume = tiny_volume.ensure("higgs_audio")
    return Settings(volume_root=volume, model_id=tiny_volume.model_id("higgs_audio"), output_dir=tmp_path)


@pytest.mark.parametrize("static", [False, True])
def test_static_cache_switch(tiny_volume, tmp_path, static):
    worker = Worker(HiggsAudio, _settings(tiny_volume, tmp_path), HiggsAudioConfig(static_cache=static))
    result = worker.run(
        {"id": "static", "input": {"transcript": "Static or dynamic.", "max_new_tokens": 60, "seed": 2}}
    )
    assert "error" not in result, result
    assert result["details"]["static_cache"] is static
    assert result["details"]["chunks"][0]["frames"] > 0


def test_a_missing_audio_tokenizer_is_known_at_start_up(tiny_volume, tmp_path):
    worker = Worker(HiggsAudio, _settings(tiny_volume, tmp_path), HiggsAudioConfig(tokenizer_id="org/no-tokenizer"))
    with pytest.raises(ModelFilesError, match=r"higgs_audio/org/no-tokenizer not found .* --model-id org/no-tokenizer"):
        worker.start()


def test_the_longest_possible_output_is_checked_before_generating():
    from handlers.higgs_audio.schema import HiggsAudioRequest
    from shared.errors import InputError
    from shared.schemas import parse_request

    words = " ".join(f"w{index}" for index in range(2000))
    request = parse_request(
        HiggsAudioRequest, {"transcript": words, "chunk_method": "word", "chunk_max_word_num": 1}, 1_000_000
    )
    with pytest.raises(InputError, match=r"max_new_tokens/chunk_method: 2000 chunk\(s\) of up to 2048 frames could"):
        HiggsAudio.check_request(request, HiggsAudioConfig())
    fewer = parse_request(HiggsAudioRequest, {"transcript": words, "chunk_method": "word"}, 1_000_000)
    HiggsAudio.check_request(fewer, HiggsAudioConfig())  # 10 chunks of 200 words: 819 s at most
