"""Tiny and bench-size VoxCPM2 / VoxCPM 1.5 checkpoints (random weights, real architecture, the published file
layout), a random LoRA for them, and the worker's contract case."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaTokenizerFast

from shared.testing import ContractCase, TinyModel

# VoxCPM's audio side as published: VoxCPM2's AudioVAE v2 encodes at 16 kHz (hop 640, 25 latent
# frames/s) and decodes to 48 kHz (hop 1920); VoxCPM 1.5's AudioVAE runs at 44.1 kHz in and out
# (assumed hop 1764 = 25 frames/s). 64-dim latents in patches of 4. Text ids 101-104 are the
# audio and reference-audio start/end tokens the models use.
_VOXCPM_AUDIO = {
    "voxcpm2": {
        "encoder_rates": [2, 5, 8, 8],
        "decoder_rates": [8, 6, 5, 2, 2, 2],
        "sample_rate": 16000,
        "out_sample_rate": 48000,
        "cond_dim": 8,
    },
    "voxcpm": {"encoder_rates": [2, 3, 6, 7, 7], "decoder_rates": [7, 7, 6, 3, 2], "sample_rate": 44100},
}
_VOXCPM_SIZES = {"tiny": (32, 2, 4, 2), "bench": (384, 8, 6, 2)}  # LM hidden, layers, heads, kv heads
VOXCPM_SPECIAL_TOKENS = ("<|audio_start|>", "<|audio_end|>", "<|ref_audio_start|>", "<|ref_audio_end|>")


def _voxcpm_tokenizer() -> LlamaTokenizerFast:
    """Byte-level BPE (the real one is a Llama-style BPE) with the audio tokens at ids 101-104."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    names = ["<unk>", "<s>", "</s>", *alphabet[:98], *VOXCPM_SPECIAL_TOKENS, *alphabet[98:]]
    backend = Tokenizer(models.BPE(vocab={name: i for i, name in enumerate(names)}, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True) for t in ["<unk>", "<s>", "</s>", *VOXCPM_SPECIAL_TOKENS]])
    return LlamaTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos_token=False
    )


def _minicpm_config(hidden: int, layers: int, heads: int, kv_heads: int, vocab: int) -> dict:
    half_head = hidden // heads // 2
    return {
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "max_position_embeddings": 4096,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-5,
        "rope_scaling": {
            "type": "longrope",
            "long_factor": [1.0] * half_head,
            "short_factor": [1.0] * half_head,
            "original_max_position_embeddings": 4096,
        },
        "vocab_size": vocab,
        "use_mup": False,
        "scale_emb": 12,
        "dim_model_base": 256,
        "scale_depth": 1.4,
        "rope_theta": 10000.0,
    }


def _build_voxcpm(target: Path, size: str, architecture: str) -> None:
    """config.json + model.safetensors + audiovae.safetensors + tokenizer files, as published."""
    from voxcpm.model.voxcpm import VoxCPMConfig as VoxCPM15Config
    from voxcpm.model.voxcpm import VoxCPMModel
    from voxcpm.model.voxcpm2 import VoxCPM2Model, VoxCPMConfig
    from voxcpm.modules.audiovae import AudioVAE, AudioVAEV2

    tokenizer = _voxcpm_tokenizer()
    if size == "full":
        config = _full_voxcpm2_config(architecture)
    else:
        hidden, layers, heads, kv_heads = _VOXCPM_SIZES[size]
        local = {"hidden_dim": hidden, "ffn_dim": 2 * hidden, "num_heads": heads, "num_layers": 1}
        vae = {"encoder_dim": 8, "latent_dim": 64, "decoder_dim": 64, **_VOXCPM_AUDIO[architecture]}
        config = {
            "architecture": architecture,
            "lm_config": _minicpm_config(hidden, layers, heads, kv_heads, len(tokenizer)),
            "patch_size": 4,
            "feat_dim": 64,
            "residual_lm_num_layers": 1,
            "scalar_quantization_latent_dim": 16,
            "scalar_quantization_scale": 9,
            "encoder_config": local,
            "dit_config": {**local, "cfm_config": {}},
            "audio_vae_config": vae,
            "max_length": 4096,  # the LM cache: text tokens + patches of the longest test job
            "device": "cpu",
            "dtype": "float32",
        }
    if architecture == "voxcpm2":
        parsed = VoxCPMConfig.model_validate(config)
        model = VoxCPM2Model(parsed, tokenizer, AudioVAEV2(config=parsed.audio_vae_config), device="cpu")
    else:
        parsed = VoxCPM15Config.model_validate(config)
        model = VoxCPMModel(parsed, tokenizer, AudioVAE(config=parsed.audio_vae_config), device="cpu")
    _never_stop(model)
    if size == "full":  # published in bfloat16; its AudioVAE stays float32, as the library runs it
        for name, part in model.named_children():
            if name != "audio_vae":
                part.to(torch.bfloat16)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    target.mkdir(parents=True, exist_ok=True)
    save_file({k: v for k, v in state.items() if not k.startswith("audio_vae.")}, target / "model.safetensors")
    vae = {k.removeprefix("audio_vae."): v for k, v in state.items() if k.startswith("audio_vae.")}
    save_file(vae, target / "audiovae.safetensors")
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_pretrained(target)
    # openbmb's tokenizer_config.json lists the audio tokens in list form (older loaders crashed on it).
    tokenizer_config = json.loads((target / "tokenizer_config.json").read_text())
    tokenizer_config["extra_special_tokens"] = list(VOXCPM_SPECIAL_TOKENS)
    (target / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")


def _full_voxcpm2_config(architecture: str) -> dict:
    """openbmb/VoxCPM2's published shapes, for scripts/gpu_check.py's GPU figures (random weights): the MiniCPM-4
    LM 2048 wide, 28 layers, 16 heads (2 key/value heads), 73448 token rows; an 8-layer residual LM; the local
    encoder and DiT 1024 wide, 12 layers, 16 heads, 4096-wide feed-forward; 512-dim scalar quantization; the
    AudioVAE v2 at the library's defaults (its published config). Read from two public configs of the release
    (third-party tests quoting config.json); the LM's feed-forward width (6144) and a 128-wide head everywhere
    (kv_channels, which the shared rope factors need) are assumed, not read."""
    if architecture != "voxcpm2":
        raise ValueError("the full size is VoxCPM2's (the default checkpoint); VoxCPM 1.5 has tiny and bench")
    lm = _minicpm_config(2048, 28, 16, 2, 73448) | {"intermediate_size": 6144, "kv_channels": 128}
    local = {"hidden_dim": 1024, "ffn_dim": 4096, "num_heads": 16, "num_layers": 12, "kv_channels": 128}
    return {
        "architecture": architecture,
        "lm_config": lm,
        "patch_size": 4,
        "feat_dim": 64,
        "residual_lm_num_layers": 8,
        "residual_lm_no_rope": True,
        "scalar_quantization_latent_dim": 512,
        "scalar_quantization_scale": 9,
        "encoder_config": local,
        "dit_config": {**local, "cfm_config": {}},
        "audio_vae_config": {"latent_dim": 64, **_VOXCPM_AUDIO[architecture] | {"cond_dim": 128}},
        "max_length": 8192,
        "device": "cpu",
        "dtype": "bfloat16",
    }


def _never_stop(model) -> None:
    """A trained stop head ends the audio when the text is spoken; a random one ends it after a few
    patches, at random. This one always says "go on", so the request's max_len sets the length: tests know
    how long a job runs (cancellation, streaming) and what it returns."""
    with torch.no_grad():
        model.stop_proj.weight.zero_()
        model.stop_proj.bias.fill_(1.0)  # constant SiLU(1) > 0 into the head
        model.stop_head.weight[0].fill_(1.0)  # "continue" logit > 0
        model.stop_head.weight[1].fill_(-1.0)  # "stop" logit < 0


def build_voxcpm2(target: Path, size: str) -> None:
    _build_voxcpm(target, size, "voxcpm2")


def build_voxcpm15(target: Path, size: str) -> None:
    _build_voxcpm(target, size, "voxcpm")


def build_voxcpm_lora(model_dir: Path, target: Path, rank: int = 4) -> Path:
    """A random LoRA (rank `rank`, LM and DiT attention) for a VoxCPM checkpoint, as training saves it."""
    from voxcpm import VoxCPM
    from voxcpm.model.voxcpm import LoRAConfig

    config = LoRAConfig(enable_lm=True, enable_dit=True, r=rank, alpha=2 * rank)
    model = VoxCPM(str(model_dir), zipenhancer_model_path=None, optimize=False, device="cpu", lora_config=config)
    weights = model.tts_model.get_lora_state_dict()
    for name, tensor in weights.items():
        if name.endswith("lora_B"):  # trained B is non-zero: the LoRA changes the output
            tensor.normal_(std=0.5)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in weights.items()}, target)
    return target


LONG_TEXT = " ".join(["A long read, sentence after sentence, to keep the model speaking."] * 8)

TINY_MODELS = (
    TinyModel("tiny-random/VoxCPM2", build_voxcpm2, published=("openbmb/VoxCPM2",)),
    TinyModel("tiny-random/VoxCPM1.5", build_voxcpm15, published=("openbmb/VoxCPM1.5",)),
)

# scripts/gpu_check.py: the size it measures on a GPU (the default checkpoint's published architecture).
GPU_CHECK = {"size": "full", "architecture": "openbmb/VoxCPM2"}

CONTRACT = ContractCase(
    job_input={"target_text": "The contract, spoken.", "inference_timesteps": 2, "max_len": 40, "retry_badcase": False},
    output_count=1,
    locked={"inference_timesteps": 3},
    bad_value=("cfg_value", 50, "cfg_value: Input should be less than or equal to 10"),
    bad_variable=("VOXCPM_LORA_SHA256", "not-a-digest", "VOXCPM_LORA_SHA256: String should match pattern"),
    # The library caps max_len at 6 patches per text token (+10): a long job needs a long text.
    fuzz_locks={"max_len": 8, "inference_timesteps": 2},
    long_job_input={"target_text": LONG_TEXT, "max_len": 3000, "retry_badcase": False},
)
