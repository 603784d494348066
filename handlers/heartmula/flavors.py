"""Sizes heartlib's FLAVORS table lacks: the tiny and bench models that tests and benchmarks build.

heartlib builds HeartMuLa's two transformers by name (config.json's `backbone_flavor`, `decoder_flavor`)
from FLAVORS, a table of torchtune llama3_2 builders; these scaled-down sizes join it the same way, with
the published context (8192 positions for the backbone, 2048 for the depth decoder) and RoPE settings.
"""

from __future__ import annotations

from functools import partial

from heartlib.heartmula.modeling_heartmula import FLAVORS
from torchtune.models import llama3_2


def _llama(width: int, layers: int, heads: int, kv_heads: int, context: int) -> partial:
    return partial(
        llama3_2.llama3_2,
        vocab_size=128_256,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        embed_dim=width,
        max_seq_len=context,
        intermediate_dim=width * 8 // 3,
        attn_dropout=0.0,
        norm_eps=1e-5,
        rope_base=500_000,
        scale_factor=32,
    )


SCALED_FLAVORS = {
    "tiny-backbone": _llama(32, 1, 2, 1, 8192),
    "tiny-decoder": _llama(32, 1, 2, 1, 2048),
    "bench-backbone": _llama(512, 6, 8, 2, 8192),
    "bench-decoder": _llama(256, 2, 4, 2, 2048),
}


def register() -> None:
    for name, build in SCALED_FLAVORS.items():
        FLAVORS.setdefault(name, build)
