"""Tiny and bench-size MusicGen checkpoints (random weights, real architecture and layout) and its contract.

Built with `save_pretrained` into <volume>/musicgen/<MODEL_ID>, exactly where the worker resolves
MODEL_ID, so tests and the demo load them through the production code.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import (
    EncodecConfig,
    EncodecFeatureExtractor,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenMelodyConfig,
    MusicgenMelodyDecoderConfig,
    MusicgenMelodyFeatureExtractor,
    MusicgenMelodyForConditionalGeneration,
    MusicgenMelodyProcessor,
    MusicgenProcessor,
    T5Config,
    T5TokenizerFast,
)

from shared.testing import ContractCase, TinyModel

# MusicGen's real audio side: EnCodec at 32 kHz, hop 640 (50 frames/s), 4 codebooks of 2048 entries
# at 2.2 kbps. Only the widths and depths shrink.
_ENCODEC_32K = {
    "sampling_rate": 32000,
    "upsampling_ratios": [8, 5, 4, 4],
    "target_bandwidths": [2.2],
    "codebook_size": 2048,
}
_SIZES = {
    "tiny": {"text": (32, 2, 4), "decoder": (32, 2, 4), "encodec": (16, 4)},
    "bench": {"text": (256, 4, 4), "decoder": (512, 12, 8), "encodec": (32, 16)},
    # facebook/musicgen-small as published: t5-base's encoder (768 wide, 12 layers, 12 heads, a 3072-wide
    # feed-forward, 32128 token rows), the 1024-wide 24-layer decoder, EnCodec 32 kHz (128 hidden, 64 filters,
    # 2 LSTM layers). For scripts/gpu_check.py's GPU figures (GPU_CHECK below); random weights.
    "full": {"text": (768, 12, 12), "decoder": (1024, 24, 16), "encodec": (128, 64)},
}


def _t5_tokenizer() -> T5TokenizerFast:
    """A real T5 (Unigram) tokenizer built from an in-memory vocabulary, no download."""
    pieces = ["▁" + word for word in ("lo", "fi", "beat", "piano", "drum", "bass", "with", "and", "bpm")]
    symbols = list(string.ascii_lowercase + string.digits + ",.-'!?") + ["▁"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -1.0 - i * 0.01) for i, p in enumerate(pieces)]
    vocab += [(s, -5.0 - i * 0.01) for i, s in enumerate(symbols)]
    return T5TokenizerFast(vocab=vocab, extra_ids=0)


def _musicgen_parts(
    size: str, tokenizer: T5TokenizerFast, decoder_class=MusicgenDecoderConfig, channels: int = 1
) -> dict:
    """Stereo checkpoints keep the mono EnCodec and decode two interleaved sets of 4 codebooks."""
    (t_dim, t_layers, t_heads), (d_dim, d_layers, d_heads), (e_hidden, e_filters) = _SIZES[size].values()
    full = size == "full"
    text = T5Config(
        vocab_size=32128 if full else len(tokenizer),
        d_model=t_dim,
        d_kv=t_dim // t_heads,
        d_ff=(4 if full else 2) * t_dim,
        num_layers=t_layers,
        num_heads=t_heads,
    )
    audio = EncodecConfig(
        **_ENCODEC_32K,
        audio_channels=1,
        hidden_size=e_hidden,
        num_filters=e_filters,
        codebook_dim=e_hidden,
        num_residual_layers=1,
        num_lstm_layers=2 if full else 1,
    )
    decoder = decoder_class(
        vocab_size=2048,
        hidden_size=d_dim,
        num_hidden_layers=d_layers,
        num_attention_heads=d_heads,
        ffn_dim=4 * d_dim,
        num_codebooks=4 * channels,
        audio_channels=channels,
        max_position_embeddings=2048,
        pad_token_id=2048,
        bos_token_id=2048,
        decoder_start_token_id=2048,
    )
    return {"text_encoder": text, "audio_encoder": audio, "decoder": decoder}


def _randomize_codebooks(encodec: torch.nn.Module) -> None:
    """EnCodec initialises its codebooks to zeros (a real checkpoint holds trained ones): without this,
    every code would decode to the same waveform and no test could tell one output from another."""
    for layer in encodec.quantizer.layers:
        layer.codebook.embed.normal_()
        layer.codebook.embed_avg.copy_(layer.codebook.embed)


def _published_generation_config(model) -> None:
    """The published generation_config.json: sampling on, guidance 3, pad/start = codebook size."""
    model.generation_config.update(
        do_sample=True,
        guidance_scale=3.0,
        max_length=1500,
        top_k=250,
        pad_token_id=2048,
        decoder_start_token_id=2048,
        bos_token_id=2048,
    )


def _save_as_published(model, processor, target: Path) -> None:
    """The published layout: the feature extractor's preprocessor_config.json and the tokenizer's files
    (transformers 5 would write one processor_config.json instead)."""
    model.save_pretrained(target)
    processor.feature_extractor.save_pretrained(target)
    processor.tokenizer.save_pretrained(target)


def _build_musicgen(target: Path, size: str, channels: int) -> None:
    tokenizer = _t5_tokenizer()
    model = MusicgenForConditionalGeneration(MusicgenConfig(**_musicgen_parts(size, tokenizer, channels=channels)))
    _randomize_codebooks(model.audio_encoder)
    _published_generation_config(model)
    processor = MusicgenProcessor(
        # As transformers' conversion script writes it: one feature per channel, padded on the left.
        feature_extractor=EncodecFeatureExtractor(
            feature_size=channels, sampling_rate=32000, padding_value=0.0, padding_side="left"
        ),
        tokenizer=tokenizer,
    )
    _save_as_published(model, processor, target)


def build_musicgen(target: Path, size: str) -> None:
    _build_musicgen(target, size, channels=1)


def build_musicgen_stereo(target: Path, size: str) -> None:
    _build_musicgen(target, size, channels=2)


def _build_musicgen_melody(target: Path, size: str, channels: int) -> None:
    """musicgen-melody: the decoder is also conditioned on a 12-bin chromagram of the melody audio
    (the published feature extractor settings: n_fft 16384, hop 4096, 30 s chunks)."""
    tokenizer = _t5_tokenizer()
    parts = _musicgen_parts(size, tokenizer, MusicgenMelodyDecoderConfig, channels)
    model = MusicgenMelodyForConditionalGeneration(MusicgenMelodyConfig(**parts, num_chroma=12))
    _randomize_codebooks(model.audio_encoder)
    _published_generation_config(model)
    processor = MusicgenMelodyProcessor(feature_extractor=MusicgenMelodyFeatureExtractor(), tokenizer=tokenizer)
    _save_as_published(model, processor, target)


def build_musicgen_melody(target: Path, size: str) -> None:
    _build_musicgen_melody(target, size, channels=1)


def build_musicgen_stereo_melody(target: Path, size: str) -> None:
    _build_musicgen_melody(target, size, channels=2)


TINY_MODELS = (
    TinyModel(
        "tiny-random/musicgen",
        build_musicgen,
        published=("facebook/musicgen-small", "facebook/musicgen-medium", "facebook/musicgen-large"),
    ),
    TinyModel(
        "tiny-random/musicgen-melody",
        build_musicgen_melody,
        published=("facebook/musicgen-melody", "facebook/musicgen-melody-large"),
    ),
    TinyModel(
        "tiny-random/musicgen-stereo",
        build_musicgen_stereo,
        serves_contract=False,  # the contract's jobs are the mono model's; its own tests cover it
        published=(
            "facebook/musicgen-stereo-small",
            "facebook/musicgen-stereo-medium",
            "facebook/musicgen-stereo-large",
        ),
    ),
    TinyModel(
        "tiny-random/musicgen-stereo-melody",
        build_musicgen_stereo_melody,
        serves_contract=False,
        published=("facebook/musicgen-stereo-melody", "facebook/musicgen-stereo-melody-large"),
    ),
)

# scripts/gpu_check.py: the size it measures on a GPU (the default checkpoint's published architecture).
GPU_CHECK = {"size": "full", "architecture": "facebook/musicgen-small"}

CONTRACT = ContractCase(
    job_input={"prompt": ["warm piano", "busy drums"], "duration": 0.5},
    output_count=2,
    locked={"duration": 0.6},
    bad_value=("duration", 900, "duration: Input should be less than or equal to 300"),
    bad_variable=("MUSICGEN_WINDOW_SECONDS", "-1", "MUSICGEN_WINDOW_SECONDS: Input should be greater than 0"),
    fuzz_locks={"duration": 0.5},
    long_job_input={"prompt": "a long piece", "duration": 120.0},
)
