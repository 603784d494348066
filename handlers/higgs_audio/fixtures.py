"""Tiny, bench and full-size Higgs Audio V2 checkpoints (random weights, real architecture, the two-folder layout),
a synthetic voice preset, and the worker's contract case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
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
from shared.testing import ContractCase, TinyModel, byte_level_bpe_tokenizer, default_dtype

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

# The full size: eustlb/higgs-audio-v2-generation-3B-base's published architecture, for scripts/gpu_check.py's GPU
# figures (random weights). The LM is what transformers' convert_higgs_audio_v2_to_hf.py builds (the record
# tests/published/eustlb--higgs-audio-v2-generation-3B-base.json): HiggsAudioV2Config(codebook_size=1026) with every
# other field at its default (vocabulary 128256, 3072 wide, 8192 feed-forward, 28 layers, 24 heads, 8 key/value
# heads, head_dim 128, 8 codebooks; the token ids below), use_text_head=True. Its 5,771,283,456 parameters are
# exactly Boson's published index total_size (11,542,566,912 bytes, bfloat16; bosonai--...-3B-base.json), and it is
# saved so: bfloat16, in three shards (max_shard_size 5GB, as Boson's model-0000N-of-00003.safetensors).
FULL_LM: dict[str, Any] = {"codebook_size": 1026}  # 1024 codes + stream bos/eos; the rest: the config's defaults
FULL_LM_SHARD_SIZE = "5GB"
# The worker takes the special tokens' ids from both sides: the processor from the tokenizer (convert_tokens_to_ids
# of <|AUDIO_OUT|>, <|audio_out_bos|>, <|audio_eos|>, <|reserved_special_token_6|>) and the model and its generation
# loop from the config (audio_token_id, audio_bos_token_id, audio_delay_token_id, eos/pad). The full size keeps the
# config's published ids, so its small byte-level tokenizer places the special tokens at the published tokenizer's
# ids: Llama 3.1's numbering (begin_of_text 128000, end_of_text 128001, start/end_header_id 128006/128007, eot_id
# 128009, reserved_special_token_6 128014), with Higgs' renames of reserved slots as Boson's HiggsAudioConfig
# defaults give them (audio_bos 128011, audio_eos 128012, audio_out_bos 128013, AUDIO 128015, AUDIO_OUT 128016; read
# in third-party copies of boson_multimodal's configuration_higgs_audio.py found by exact-string code search).
# Those agree with HiggsAudioV2Config's defaults (pad 128001, eos 128009, audio_token_id 128016, audio_bos_token_id
# 128013, audio_delay_token_id 128014). The scene-description tokens' published ids were not read: they take the next
# two reserved slots (no code reads their ids; the prompt needs them as single tokens). Every other id below 128256
# is left unused (the prompt's text is bytes, ids 0-255).
FULL_TOKEN_IDS = {
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
    "<|scene_desc_start|>": 128017,
    "<|scene_desc_end|>": 128018,
}
# The audio tokenizer: what handlers/higgs_audio/convert.py (_native_tokenizer_config) makes of Boson's published
# config.json (bosonai--higgs-audio-v2-tokenizer.json: D 256, codebook_dim 64, ratios [8, 5, 4, 2, 3], 24 kHz, bins
# 1024, n_q 8, HuBERT-base teacher) and its weights' widths (DAC encoder 64, decoder 1024, fixed by Boson's code);
# the teacher is hubert-base, HubertConfig's defaults (768 wide, 12 layers). 201,401,321 tensors' elements in
# float32 = 805.6 MB, the published model.safetensors' ~806 MB (eustlb--higgs-audio-v2-tokenizer.json). Float32, as
# published and as the worker runs it.
FULL_ACOUSTIC: dict[str, Any] = {
    "encoder_hidden_size": 64,
    "downsampling_ratios": _HIGGS_HOP_RATIOS,
    "upsampling_ratios": _HIGGS_HOP_RATIOS,
    "decoder_hidden_size": 1024,
    "hidden_size": 256,
    "sampling_rate": 24000,
}
FULL_AUDIO_TOKENIZER: dict[str, Any] = {
    "sample_rate": 24000,
    "target_bandwidths": [0.5, 1, 1.5, 2],  # the converter drops Boson's 4 kbps: over n_q 8's 2 kbps
    "codebook_size": 1024,
    "codebook_dim": 64,
    "semantic_sample_rate": 16000,
    "downsample_factor": 320,
}


def _full_components() -> tuple[Any, Any, Any]:
    with default_dtype(torch.bfloat16):  # built in bfloat16: 11.5 GB of memory, not 23
        model = HiggsAudioV2ForConditionalGeneration(HiggsAudioV2Config(**FULL_LM), use_text_head=True)
    audio_tokenizer = HiggsAudioV2TokenizerModel(
        HiggsAudioV2TokenizerConfig(
            **FULL_AUDIO_TOKENIZER,
            acoustic_model_config=DacConfig(**FULL_ACOUSTIC),
            semantic_model_config=HubertConfig(),  # hubert-base, as published
        )
    )
    tokenizer = byte_level_bpe_tokenizer(
        tuple(FULL_TOKEN_IDS), bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|end_of_text|>", ids=FULL_TOKEN_IDS
    )
    return tokenizer, model, audio_tokenizer


def higgs_audio_components(size: str) -> tuple[Any, Any, Any]:
    """(text tokenizer, LM, audio tokenizer) at one size (tiny, bench, or full: the published architecture, the LM
    in bfloat16), without writing anything; built on the current default device."""
    if size == "full":
        tokenizer, model, audio_tokenizer = _full_components()
    else:
        tokenizer, model, audio_tokenizer = _scaled_components(size)
    model.generation_config.update(do_sample=True, temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=2048)
    # Codebooks start as zeros (trained ones are on the volume): random ones make codes decode apart.
    with torch.no_grad():
        for quantizer in audio_tokenizer.quantizer.quantizers:
            quantizer.codebook.embed.normal_()
            quantizer.codebook.embed_avg.copy_(quantizer.codebook.embed)
    return tokenizer, model, audio_tokenizer


def _scaled_components(size: str) -> tuple[Any, Any, Any]:
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
    return tokenizer, model, audio_tokenizer


def build_higgs_audio(target: Path, size: str) -> None:
    """Two folders, as published: the LM (generation) and the audio tokenizer beside it. `size` full: the published
    architecture: the LM in bfloat16, 11.5 GB in three shards (index total_size Boson's to the byte), the audio
    tokenizer in float32, 0.8 GB; measured on a 2-core CPU: 90 s, peak RSS 11.9 GiB."""
    tokenizer, model, audio_tokenizer = higgs_audio_components(size)
    model.save_pretrained(target, **({"max_shard_size": FULL_LM_SHARD_SIZE} if size == "full" else {}))
    del model
    tokenizer.save_pretrained(target)
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

# scripts/gpu_check.py: the size it measures on a GPU (the default checkpoint's published architecture).
GPU_CHECK = {"size": "full", "architecture": "eustlb/higgs-audio-v2-generation-3B-base"}

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
