"""Tiny and bench-size Higgs Audio V2 checkpoints (random weights, real architecture, the two-folder layout),
a synthetic voice preset, and the worker's contract case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
from transformers import (
    DacConfig,
    DacFeatureExtractor,
    HiggsAudioV2Config,
    HiggsAudioV2ForConditionalGeneration,
    HiggsAudioV2TokenizerConfig,
    HiggsAudioV2TokenizerModel,
    HubertConfig,
)

from handlers.higgs_audio.catalog import TOKENIZER_NAME
from shared.testing import ContractCase, TinyModel, byte_level_bpe_tokenizer

# Higgs Audio V2's tokenizer side as published: 24 kHz in and out, DAC hop 960 (25 frames/s),
# 8 codebooks of 1024 codes (2 kbps), HuBERT semantic branch at 16 kHz with its 320x conv stack.
_HIGGS_HOP_RATIOS = [8, 5, 4, 2, 3]
_HIGGS_SIZES = {"tiny": (32, 2, 4, 2), "bench": (512, 8, 8, 4)}  # LM hidden, layers, heads, kv heads
# The Llama-3 special tokens the Higgs prompt format uses (their names as in the published tokenizer).
HIGGS_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|audio_out_bos|>",
    "<|reserved_special_token_6|>",
    "<|AUDIO|>",
    "<|AUDIO_OUT|>",
    "<|scene_desc_start|>",
    "<|scene_desc_end|>",
)


def build_higgs_audio(target: Path, size: str) -> None:
    """Two folders, as published: the LM (generation) and the audio tokenizer beside it."""
    hidden, layers, heads, kv_heads = _HIGGS_SIZES[size]
    tokenizer = byte_level_bpe_tokenizer(
        HIGGS_SPECIAL_TOKENS, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|end_of_text|>"
    )
    token_id = tokenizer.convert_tokens_to_ids
    config = HiggsAudioV2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        num_codebooks=8,
        codebook_size=1026,  # 1024 codes + stream bos/eos
        pad_token_id=token_id("<|end_of_text|>"),
        bos_token_id=token_id("<|begin_of_text|>"),
        eos_token_id=token_id("<|eot_id|>"),
        audio_token_id=token_id("<|AUDIO_OUT|>"),
        audio_bos_token_id=token_id("<|audio_out_bos|>"),
        audio_delay_token_id=token_id("<|reserved_special_token_6|>"),
    )
    model = HiggsAudioV2ForConditionalGeneration(config)
    model.generation_config.update(do_sample=True, temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=2048)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)

    audio_tokenizer = HiggsAudioV2TokenizerModel(
        HiggsAudioV2TokenizerConfig(
            sample_rate=24000,
            target_bandwidths=[0.5, 1, 1.5, 2],
            codebook_size=1024,
            codebook_dim=8,
            acoustic_model_config=DacConfig(
                encoder_hidden_size=4,
                downsampling_ratios=_HIGGS_HOP_RATIOS,
                upsampling_ratios=_HIGGS_HOP_RATIOS,
                decoder_hidden_size=64,
                hidden_size=16,
                sampling_rate=24000,
            ),
            semantic_model_config=HubertConfig(
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                conv_dim=[8] * 7,
                num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2,
                mask_time_prob=0.0,
            ),
        )
    )
    # Codebooks start as zeros (trained ones are on the volume): random ones make codes decode apart.
    for quantizer in audio_tokenizer.quantizer.quantizers:
        quantizer.codebook.embed.normal_()
        quantizer.codebook.embed_avg.copy_(quantizer.codebook.embed)
    tokenizer_folder = target.parent / TOKENIZER_NAME
    audio_tokenizer.save_pretrained(tokenizer_folder)
    DacFeatureExtractor(feature_size=1, sampling_rate=24000, hop_length=960).save_pretrained(tokenizer_folder)
    _write_voice_preset(target.parents[1] / "voices", "demo_voice")


def _write_voice_preset(folder: Path, name: str) -> None:
    """A voice preset in the volume layout (<name>.wav + <name>.txt): a synthetic 2 s vowel-like tone."""
    folder.mkdir(parents=True, exist_ok=True)
    rate = 24000
    times = np.arange(2 * rate) / rate
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.5 * times)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    samples = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2 * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * times))
    soundfile.write(folder / f"{name}.wav", samples.astype(np.float32), rate)
    (folder / f"{name}.txt").write_text("This is the demo voice reading a short sentence.\n")


TINY_MODELS = (
    TinyModel(
        "tiny-random/higgs-audio-v2-generation",
        build_higgs_audio,
        published=("eustlb/higgs-audio-v2-generation-3B-base",),  # with eustlb/higgs-audio-v2-tokenizer beside it
    ),
)

CONTRACT = ContractCase(
    job_input={"transcript": "The contract, spoken.", "max_new_tokens": 40},
    output_count=1,
    locked={"max_new_tokens": 24},
    bad_value=("top_p", 1.5, "top_p: Input should be less than or equal to 1"),
    bad_variable=("HIGGS_AUDIO_STATIC_CACHE", "maybe", "HIGGS_AUDIO_STATIC_CACHE: Input should be a valid boolean"),
    fuzz_locks={"max_new_tokens": 16, "chunk_method": None},
    long_job_input={
        "transcript": " ".join(f"word{index}" for index in range(400)),
        "chunk_method": "word",
        "chunk_max_word_num": 1,
        "max_new_tokens": 64,
    },
)
