"""The full-size ACE-Step model that scripts/gpu_check.py measures on a GPU (fixtures GPU_CHECK): the default
checkpoint's (ACE-Step/acestep-v15-base) published architecture with random weights. Built here on the meta device
(no weights, nothing written) and checked against the published values and the published files' sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from handlers.ace_step import fixtures
from handlers.ace_step.catalog import CATALOG

PUBLISHED = Path(__file__).parent / "published"
# File sizes from the record of ACE-Step/Ace-Step1.5 (two third-party manifests pinned to it, sizes from the hub).
MAIN_FILES = json.loads((PUBLISHED / "ACE-Step--Ace-Step1.5.json").read_text())["files"]
# The 2B DiT file holds the transformer, the condition encoder and the audio tokenizer pair (ACE-Step's decoder.*,
# encoder.*, tokenizer.*, detokenizer.*, null_condition_emb: handlers/ace_step/convert.py). The record of
# acestep-v15-base leaves its size unknown; the turbo's is the same architecture's (the same four parts: only
# training and model_version differ), so it stands for the base's.
DIT_BYTES = MAIN_FILES["acestep-v15-turbo/model.safetensors"]
TEXT_ENCODER_BYTES = MAIN_FILES["Qwen3-Embedding-0.6B/model.safetensors"]
VAE_BYTES = MAIN_FILES["vae/diffusion_pytorch_model.safetensors"]
BYTES_PER_PARAMETER = 2  # all three are published at 2 bytes a parameter (bfloat16)
# Parameters must match bytes / 2 within 0.5%: a safetensors header (tens of KB) is far below it; one layer of any
# stack is far above (the smallest, a Qwen3 layer, is 2.6% of the text encoder; a DiT layer 2.6% of the DiT file).
TOLERANCE = 0.005

# The published values, restated here from their sources (not read from fixtures.FULL_ACE_STEP, which they check):
# diffusers' class defaults (= ACE-Step's 2B config), Qwen3-Embedding-0.6B's config.json, and ACE-Step/Ace-Step1.5
# vae/config.json as third-party pinned copies quote it.
ATTENTION = {"num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "sliding_window": 128}
ATTENTION |= {"rope_theta": 1_000_000.0}
PUBLISHED_CONFIGS = {
    "transformer": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 24,
        "in_channels": 192,
        "audio_acoustic_hidden_dim": 64,
        "patch_size": 2,
        "encoder_hidden_size": 2048,
        "is_turbo": False,
        "model_version": "base",
        **ATTENTION,
    },
    "condition_encoder": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "text_hidden_dim": 1024,
        "timbre_hidden_dim": 64,
        "num_lyric_encoder_hidden_layers": 8,
        "num_timbre_encoder_hidden_layers": 4,
        **ATTENTION,
    },
    "audio_tokenizer": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "audio_acoustic_hidden_dim": 64,
        "pool_window_size": 5,
        "num_attention_pooler_hidden_layers": 2,
        "fsq_dim": 2048,
        **ATTENTION,
    },
    "audio_token_detokenizer": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "audio_acoustic_hidden_dim": 64,
        "pool_window_size": 5,
        "num_attention_pooler_hidden_layers": 2,
        **ATTENTION,
    },
    "text_encoder": {
        "vocab_size": 151669,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    },
    "vae": {
        "encoder_hidden_size": 128,
        "channel_multiples": [1, 2, 4, 8, 16],
        "decoder_channels": 128,
        "decoder_input_channels": 64,
        "downsampling_ratios": [2, 4, 4, 6, 10],
        "audio_channels": 2,
        "sampling_rate": 48000,
    },
}
DIT_PARTS = ("transformer", "condition_encoder", "audio_tokenizer", "audio_token_detokenizer")


def _full() -> dict:
    with torch.device("meta"):
        return fixtures.ace_step_components("full")


def _parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _counts(components: dict) -> dict[str, tuple[int, int]]:
    """Published file -> (parameters built, parameters the file's bytes hold)."""
    return {
        "DiT": (sum(_parameters(components[part]) for part in DIT_PARTS), DIT_BYTES // BYTES_PER_PARAMETER),
        "text encoder": (_parameters(components["text_encoder"]), TEXT_ENCODER_BYTES // BYTES_PER_PARAMETER),
        "VAE": (_parameters(components["vae"]), VAE_BYTES // BYTES_PER_PARAMETER),
    }


def _off(built: int, published: int) -> float:
    return abs(built - published) / published


@pytest.mark.unit
def test_gpu_check_measures_the_default_checkpoints_architecture_at_full_size():
    assert {"size": "full", "architecture": CATALOG.default_model_id} == fixtures.GPU_CHECK
    assert CATALOG.default_model_id == "ACE-Step/acestep-v15-base"


@pytest.mark.unit
def test_full_size_has_the_published_configuration_in_bfloat16():
    components = _full()
    for part, published in PUBLISHED_CONFIGS.items():
        config = components[part].config
        read = {name: getattr(config, name) for name in published}
        if part == "text_encoder":  # transformers keeps rope_theta among its rope parameters
            assert config.rope_parameters["rope_theta"] == 1_000_000, part
        assert {name: list(value) if isinstance(value, tuple) else value for name, value in read.items()} == published
        dtypes = {parameter.dtype for parameter in components[part].parameters()}
        assert dtypes == {torch.bfloat16}, part
    assert torch.get_default_dtype() == torch.float32  # the bfloat16 default is restored
    # The tokenizer stays the small byte-level one: every id it makes has a row in the published embedding.
    tokenizer = components["tokenizer"]
    assert max(tokenizer.get_vocab().values()) < PUBLISHED_CONFIGS["text_encoder"]["vocab_size"]


@pytest.mark.unit
def test_full_size_parameter_counts_match_the_published_files():
    counts = _counts(_full())
    for name, (built, published) in counts.items():
        assert _off(built, published) < TOLERANCE, f"{name}: {built:,} parameters, published {published:,}"
    # Measured (diffusers 0.42.1, transformers 5.23.0): 2,393,872,518 / 595,776,512 / 168,695,426, each within
    # 0.003% of its file (the rest is the file's header).
    assert counts["DiT"][0] == 2_393_872_518


@pytest.mark.unit
@pytest.mark.parametrize(
    ("part", "name", "value"),
    [
        ("transformer", "num_hidden_layers", 23),
        ("transformer", "intermediate_size", 5632),
        ("condition_encoder", "num_lyric_encoder_hidden_layers", 7),
        ("audio_codes", "num_attention_pooler_hidden_layers", 1),
        ("text_encoder", "num_hidden_layers", 27),
        ("text_encoder", "hidden_size", 896),
        ("vae", "decoder_channels", 120),
    ],
)
def test_a_wrong_width_or_layer_count_misses_the_published_size(monkeypatch, part, name, value):
    monkeypatch.setitem(fixtures.FULL_ACE_STEP[part], name, value)
    counts = _counts(_full())
    assert any(_off(built, published) >= TOLERANCE for built, published in counts.values())


@pytest.mark.unit
def test_full_size_is_the_2b_architecture_only():
    with pytest.raises(ValueError, match="2B architecture"), torch.device("meta"):
        fixtures.ace_step_components("full", xl=True)
