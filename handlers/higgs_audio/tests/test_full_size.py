"""The full-size Higgs Audio V2 model that scripts/gpu_check.py measures on a GPU (fixtures GPU_CHECK): the default
checkpoint's (eustlb/higgs-audio-v2-generation-3B-base, with eustlb/higgs-audio-v2-tokenizer beside it) published
architecture with random weights. Built here on the meta device (no weights, nothing written) and checked against the
published values, the published files' sizes, and the ids the worker's processor reads from the tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import DacFeatureExtractor, HiggsAudioV2Processor, HubertConfig, HubertModel

from handlers.higgs_audio import fixtures
from handlers.higgs_audio.catalog import CATALOG
from handlers.higgs_audio.convert import _native_tokenizer_config
from handlers.higgs_audio.prompt import build_prompt

PUBLISHED = Path(__file__).parent / "published"
BOSON_LM = json.loads((PUBLISHED / "bosonai--higgs-audio-v2-generation-3B-base.json").read_text())
BOSON_TOKENIZER = json.loads((PUBLISHED / "bosonai--higgs-audio-v2-tokenizer.json").read_text())
EUSTLB_TOKENIZER = json.loads((PUBLISHED / "eustlb--higgs-audio-v2-tokenizer.json").read_text())
# Boson's LM index (read directly: total_size, the tensors' bytes without headers, bfloat16). transformers' converter
# maps every one of its tensors into the eustlb LM (audio MLPs, both heads: use_text_head=True), none added.
LM_BYTES = BOSON_LM["config"]["model.safetensors.index.json"]["metadata"]["total_size"]
# eustlb's tokenizer file: 806,000,000 bytes, a rounded figure (third-party fixture), float32.
AUDIO_TOKENIZER_BYTES = EUSTLB_TOKENIZER["files"]["model.safetensors"]
# Counts must match bytes / dtype size within 0.5%: the rounding of 806 MB and a file header are far below it; one LM
# layer is 3% of the LM, one HuBERT layer 3.5% of the audio tokenizer.
TOLERANCE = 0.005

# The published values, restated from their sources (not read from the fixtures' tables, which they check): the
# converter's HiggsAudioV2Config(codebook_size=1026), every other field at transformers' default (the record of
# eustlb/higgs-audio-v2-generation-3B-base; Boson's config.json: Llama-3.2-3B, 28 layers, 3072 wide, 24/8 heads).
PUBLISHED_LM = {
    "vocab_size": 128256,
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 28,
    "num_attention_heads": 24,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "num_codebooks": 8,
    "codebook_size": 1026,
    "pad_token_id": 128001,
    "bos_token_id": 1,  # sic: the config's default, and the published generation_config.json's
    "eos_token_id": 128009,
    "audio_token_id": 128016,
    "audio_bos_token_id": 128013,
    "audio_delay_token_id": 128014,
}
# Llama 3's ids, and Higgs' renamed reserved slots as Boson's HiggsAudioConfig defaults give them.
PUBLISHED_TOKEN_IDS = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eot_id|>": 128009,
    "<|audio_bos|>": 128011,
    "<|audio_eos|>": 128012,
    "<|audio_out_bos|>": 128013,
    "<|reserved_special_token_6|>": 128014,
    "<|AUDIO|>": 128015,
    "<|AUDIO_OUT|>": 128016,
}
# Boson's tokenizer config.json (D 256, codebook_dim 64, ratios, 24 kHz, bins 1024, n_q 8, HuBERT-base teacher) as
# the converter maps it; the DAC widths are Boson's code's fixed ones.
PUBLISHED_ACOUSTIC = {
    "encoder_hidden_size": 64,
    "downsampling_ratios": [8, 5, 4, 2, 3],
    "upsampling_ratios": [8, 5, 4, 2, 3],
    "decoder_hidden_size": 1024,
    "hidden_size": 256,
    "sampling_rate": 24000,
    "hop_length": 960,
}
PUBLISHED_AUDIO_TOKENIZER = {
    "sample_rate": 24000,
    "codebook_size": 1024,
    "codebook_dim": 64,
    "target_bandwidths": [0.5, 1, 1.5, 2],
    "semantic_sample_rate": 16000,
    "downsample_factor": 320,
    "num_quantizers": 8,
}
PUBLISHED_HUBERT = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


def _full() -> tuple:
    with torch.device("meta"):
        return fixtures.higgs_audio_components("full")


def _elements(module: torch.nn.Module) -> int:
    """What save_pretrained writes: parameters and persistent buffers."""
    return sum(tensor.numel() for tensor in module.state_dict().values())


def _off(built: int, published: float) -> float:
    return abs(built - published) / published


def _counts(lm: torch.nn.Module, audio_tokenizer: torch.nn.Module) -> dict[str, tuple[int, float]]:
    return {
        "LM": (_elements(lm), LM_BYTES / 2),
        "audio tokenizer": (_elements(audio_tokenizer), AUDIO_TOKENIZER_BYTES / 4),
    }


@pytest.mark.unit
def test_gpu_check_measures_the_default_checkpoints_architecture_at_full_size():
    assert {"size": "full", "architecture": CATALOG.default_model_id} == fixtures.GPU_CHECK
    assert CATALOG.default_model_id == "eustlb/higgs-audio-v2-generation-3B-base"


@pytest.mark.unit
def test_full_lm_has_the_published_configuration_in_bfloat16():
    _, lm, audio_tokenizer = _full()
    assert {name: getattr(lm.config, name) for name in PUBLISHED_LM} == PUBLISHED_LM
    assert lm.text_lm_head is not None  # use_text_head=True, as the converter builds it
    assert {parameter.dtype for parameter in lm.parameters()} == {torch.bfloat16}
    assert {parameter.dtype for parameter in audio_tokenizer.parameters()} == {torch.float32}
    assert torch.get_default_dtype() == torch.float32  # the bfloat16 default is restored


@pytest.mark.unit
def test_full_tokenizer_gives_the_processor_the_configs_token_ids():
    """The worker's processor reads the audio tokens' ids from the tokenizer, the model and its generation loop read
    them from the config: built as the adapter builds it, the processor must see the config's (published) ids."""
    tokenizer, lm, audio_tokenizer = _full()
    processor = HiggsAudioV2Processor(
        feature_extractor=DacFeatureExtractor(feature_size=1, sampling_rate=24000, hop_length=960),
        tokenizer=tokenizer,
        audio_tokenizer=audio_tokenizer,
    )
    config = lm.config
    assert processor.audio_token_id == config.audio_token_id
    assert processor.audio_bos_token_id == config.audio_bos_token_id
    assert processor.audio_delay_token_id == config.audio_delay_token_id
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (config.eos_token_id, config.pad_token_id)
    assert {name: tokenizer.convert_tokens_to_ids(name) for name in PUBLISHED_TOKEN_IDS} == PUBLISHED_TOKEN_IDS
    # Every special token of the prompt is one token, every id has an embedding row.
    ids = tokenizer(build_prompt("A quiet room.", ["Earlier."], "Hello."))["input_ids"]
    special = {tokenizer.convert_tokens_to_ids(name) for name in fixtures.HIGGS_SPECIAL_TOKENS}
    assert len(special) == len(fixtures.HIGGS_SPECIAL_TOKENS)
    assert ids[0] == PUBLISHED_TOKEN_IDS["<|begin_of_text|>"] and ids[-1] == config.audio_bos_token_id
    assert ids.count(config.audio_token_id) == 1
    assert max(ids) < config.vocab_size and all(index < 256 or index in special for index in ids)


@pytest.mark.unit
def test_full_audio_tokenizer_is_what_the_converter_makes_of_bosons_published_config():
    _, _, audio_tokenizer = _full()
    config = audio_tokenizer.config
    assert {name: getattr(config, name) for name in PUBLISHED_AUDIO_TOKENIZER} == PUBLISHED_AUDIO_TOKENIZER
    acoustic = config.acoustic_model_config
    assert {name: getattr(acoustic, name) for name in PUBLISHED_ACOUSTIC} == PUBLISHED_ACOUSTIC
    semantic = config.semantic_model_config
    assert {name: getattr(semantic, name) for name in PUBLISHED_HUBERT} == PUBLISHED_HUBERT
    # The converter (convert.py) on Boson's config.json and a model.pth of the published widths: the DAC's stem and
    # head convolutions (the widths it reads off them) and a hubert-base teacher's tensors.
    with torch.device("meta"):
        teacher = HubertModel(HubertConfig())
        state = {f"semantic_model.{key}": tensor for key, tensor in teacher.state_dict().items()}
        state["encoder.block.0.weight_v"] = torch.empty(64, 1, 7)
        state["decoder_2.model.0.weight_v"] = torch.empty(1024, 256, 7)
    native, _ = _native_tokenizer_config(BOSON_TOKENIZER["config"]["config.json"], state, Path("config.json"))
    assert {**native.to_dict(), "architectures": None} == {**config.to_dict(), "architectures": None}


@pytest.mark.unit
def test_full_size_parameter_counts_match_the_published_files():
    _, lm, audio_tokenizer = _full()
    counts = _counts(lm, audio_tokenizer)
    for name, (built, published) in counts.items():
        assert _off(built, published) < TOLERANCE, f"{name}: {built:,} elements, published {published:,.0f}"
    # Measured (transformers 5.23.0): the LM is Boson's index to the byte; the audio tokenizer 201,401,321 elements
    # (805.6 MB in float32, 0.05% under the rounded 806 MB).
    assert counts["LM"][0] * 2 == LM_BYTES


@pytest.mark.unit
@pytest.mark.parametrize(
    ("table", "name", "value"),
    [
        ("FULL_LM", "num_hidden_layers", 27),
        ("FULL_LM", "intermediate_size", 8064),
        ("FULL_LM", "hidden_size", 2880),  # a multiple of the 24 heads
        ("FULL_ACOUSTIC", "decoder_hidden_size", 960),
        ("FULL_ACOUSTIC", "encoder_hidden_size", 48),
    ],
)
def test_a_wrong_width_or_layer_count_misses_the_published_size(monkeypatch, table, name, value):
    monkeypatch.setitem(getattr(fixtures, table), name, value)
    _, lm, audio_tokenizer = _full()
    assert any(_off(built, published) >= TOLERANCE for built, published in _counts(lm, audio_tokenizer).values())
