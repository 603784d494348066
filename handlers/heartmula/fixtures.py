"""Tiny and bench-size HeartMuLa checkpoints (random weights, heartlib's classes and layout) and its contract.

Written into <volume>/heartmula/<MODEL_ID> in heartlib's checkpoint layout: gen_config.json (the published
ids), tokenizer.json (a byte-level BPE carrying Llama 3's special-token ids, 128000/128001), a HeartMuLa
built from scaled-down torchtune flavours (handlers/heartmula/flavors.py) and a HeartCodec with narrow
stacks but the published codebooks (8 x 8192), latent rate and 48 kHz decoder, each saved with
`save_pretrained` as the published ones are. The worker loads them through its production code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from heartlib.heartcodec.configuration_heartcodec import HeartCodecConfig
from heartlib.heartcodec.modeling_heartcodec import HeartCodec
from heartlib.heartmula.configuration_heartmula import HeartMuLaConfig
from heartlib.heartmula.modeling_heartmula import HeartMuLa
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

from handlers.heartmula import flavors
from handlers.heartmula.catalog import CODEC_FOLDER, MULA_FOLDER
from shared.testing import ContractCase, TinyModel, default_dtype
from shared.volume import make_readable

# HeartMuLaGen's gen_config.json as published.
GEN_CONFIG = {"text_bos_id": 128000, "text_eos_id": 128001, "audio_eos_id": 8193, "empty_id": 0}
_SPECIAL_TOKENS = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001}
# Codec widths per size; the codebooks (8 x 8192), the latent (256 wide: detokenize hard-codes it), the hop
# and the sample rate stay the published ones.
_CODEC = {
    "tiny": {"dim": 32, "codebook_dim": 8, "heads": 2, "head_dim": 8, "layers": (1, 1), "channels": 4},
    "bench": {"dim": 128, "codebook_dim": 16, "heads": 4, "head_dim": 32, "layers": (2, 1), "channels": 8},
}
_LATENT = 256


def _tokenizer() -> Tokenizer:
    """Byte-level BPE (Llama 3's kind) over the 256 byte symbols, with Llama 3's special-token ids and its
    post-processor (begin_of_text first)."""
    vocab = {symbol: index for index, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab | _SPECIAL_TOKENS, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(_SPECIAL_TOKENS))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", _SPECIAL_TOKENS["<|begin_of_text|>"])]
    )
    return tokenizer


# The published flavours (heartlib's FLAVORS) for the full size; scaled ones (flavors.py) for the others.
_FLAVORS = {"full": ("llama-3B", "llama-300M")}


def _mula(size: str) -> HeartMuLa:
    flavors.register()
    backbone, decoder = _FLAVORS.get(size, (f"{size}-backbone", f"{size}-decoder"))
    model = HeartMuLa(HeartMuLaConfig(backbone_flavor=backbone, decoder_flavor=decoder))
    with torch.no_grad():
        model.audio_head.normal_(std=0.02)  # nn.Parameter(torch.empty(...)): heartlib leaves it uninitialised
        if size != "full":
            # A random model would sample an end-of-song token (>= 8193) within a few hundred frames; zero
            # logits for them lie far below any top-k threshold of 8193 random ones, so a tiny song runs the
            # length it is asked for (the worker's EOS handling is heartlib's own check).
            model.codebook0_head.weight[GEN_CONFIG["audio_eos_id"] :] = 0
            model.audio_head[..., GEN_CONFIG["audio_eos_id"] :] = 0
    return model


def _codec(size: str) -> HeartCodec:
    if size == "full":
        return HeartCodec(HeartCodecConfig())  # the published defaults
    widths = _CODEC[size]
    config = HeartCodecConfig(
        dim=widths["dim"],
        codebook_dim=widths["codebook_dim"],
        attention_head_dim=widths["head_dim"],
        num_attention_heads=widths["heads"],
        num_layers=widths["layers"][0],
        num_layers_2=widths["layers"][1],
        # The estimator sees [noisy latent, in-context latent, condition]: out, out and dim wide.
        out_channels=_LATENT,
        in_channels=2 * _LATENT + widths["dim"],
        latent_hidden_dim=_LATENT // 2,  # the scalar codec decodes the latent as two 128-wide halves
        init_channel=widths["channels"],
    )
    return HeartCodec(config)


def build_heartmula(target: Path, size: str) -> None:
    """`size`: tiny, bench, or full (the published sizes, for GPU memory checks: HeartMuLa saved in bfloat16,
    ~7 GB, where the published one is float32, ~15.8 GB: the worker loads bfloat16 either way; build it on a
    GPU machine)."""
    torch.manual_seed(0)
    target.mkdir(parents=True, exist_ok=True)
    (target / "gen_config.json").write_text(json.dumps(GEN_CONFIG, indent=2))
    _tokenizer().save(str(target / "tokenizer.json"))
    with default_dtype(torch.bfloat16 if size == "full" else torch.get_default_dtype()):  # full: half the memory
        mula = _mula(size)
    mula.save_pretrained(target / MULA_FOLDER)
    del mula
    _codec(size).save_pretrained(target / CODEC_FOLDER)
    make_readable(target)  # safetensors writes 0600; the images run as another user


TINY_MODELS = (
    TinyModel(
        "tiny-random/heartmula",
        build_heartmula,
        published=("HeartMuLa/HeartMuLa-oss-3B-happy-new-year", "HeartMuLa/HeartMuLa-RL-oss-3B-20260123"),
    ),
)

# scripts/gpu_check.py: the size it measures on a GPU (the default checkpoint's published architecture).
GPU_CHECK = {"size": "full", "architecture": "HeartMuLa/HeartMuLa-oss-3B-happy-new-year"}

CONTRACT = ContractCase(
    job_input={"lyrics": "[Verse]\nla la la", "tags": "piano,happy", "max_duration_ms": 800},
    output_count=1,
    locked={"max_duration_ms": 640},
    bad_value=("cfg_scale", 0.5, "cfg_scale: Input should be greater than or equal to 1"),
    bad_variable=("HEARTMULA_MAX_DURATION_MS", "0", "HEARTMULA_MAX_DURATION_MS: Input should be greater than"),
    fuzz_locks={"max_duration_ms": 400},
    long_job_input={"lyrics": "[Verse]\nla la la", "tags": "piano", "max_duration_ms": 240000},
)
