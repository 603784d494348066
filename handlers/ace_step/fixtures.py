"""Tiny, bench and full-size ACE-Step 1.5 pipelines (random weights, real architecture, diffusers' layout) and
the worker's contract case."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import Qwen3Config, Qwen3Model

from shared.testing import ContractCase, TinyModel, byte_level_bpe_tokenizer, default_dtype

# ACE-Step 1.5's audio side as published: AutoencoderOobleck, 48 kHz stereo, downsampling 2*4*4*6*10 =
# 1920 (25 latent frames/s), 64-dim latents (the encoder's output is 2 x 64: mean and scale).
_ACE_SIZES = {"tiny": (32, 2, 8), "bench": (512, 8, 64)}  # DiT/text hidden, layers, VAE decoder channels

# The full size: ACE-Step/acestep-v15-base's published architecture (the default checkpoint, 2B), for
# scripts/gpu_check.py's GPU figures; random weights. Sources:
# - the DiT (transformer/), condition encoder and audio tokenizer pair: diffusers' class defaults
#   (AceStepTransformer1DModel, AceStepConditionEncoder, AceStepAudioTokenizer, AceStepAudioTokenDetokenizer in
#   diffusers 0.42.1, read with inspect.signature), which are ACE-Step's AceStepConfig defaults and what diffusers'
#   convert_ace_step_to_diffusers.py carries over from a 2B config.json (hidden 2048, 24 layers: the record
#   tests/published/ACE-Step--acestep-v15-base.json). Spelled out here so that a change of defaults cannot change
#   the model. Their parameters (2,393,872,518) are the published 2B DiT file's bytes / 2 (bfloat16): 4,787,825,604
#   bytes, acestep-v15-turbo/model.safetensors in ACE-Step--Ace-Step1.5.json (the base's size is not recorded;
#   every 2B variant's DiT file holds the same four parts), to within its header.
# - the text encoder: Qwen3-Embedding-0.6B's published config.json (Qwen3Model, vocabulary 151669, 28 layers,
#   1024 wide); 595,776,512 parameters = its model.safetensors (1,191,586,416 bytes, bfloat16) / 2.
# - the VAE: ACE-Step/Ace-Step1.5 vae/config.json as third-party pinned copies quote it; 168,695,426 parameters =
#   its diffusion_pytorch_model.safetensors (337,431,388 bytes) / 2, so it is published at 2 bytes a parameter.
# The worker loads every part in its own dtype (bfloat16 on a GPU, float32 on a CPU), so all are saved in
# bfloat16 (~6.3 GB, as published) and built in it (the modules are constructed under a bfloat16 default dtype:
# ~6.3 GB of memory, not 12.6).
_FULL_ATTENTION = {
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "sliding_window": 128,
    "rope_theta": 1_000_000.0,
}
FULL_ACE_STEP: dict[str, dict[str, Any]] = {
    "transformer": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 24,
        "in_channels": 192,  # noisy latents, source latents and mask, 64 each
        "audio_acoustic_hidden_dim": 64,
        "patch_size": 2,
        "encoder_hidden_size": 2048,  # the condition encoder's width: the DiT's own (XL's DiT is wider)
        **_FULL_ATTENTION,
    },
    "condition_encoder": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "text_hidden_dim": 1024,  # Qwen3-Embedding-0.6B's width
        "timbre_hidden_dim": 64,
        "num_lyric_encoder_hidden_layers": 8,
        "num_timbre_encoder_hidden_layers": 4,
        **_FULL_ATTENTION,
    },
    # AceStepAudioTokenizer and AceStepAudioTokenDetokenizer (the tokenizer adds fsq_dim 2048).
    "audio_codes": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "audio_acoustic_hidden_dim": 64,
        "pool_window_size": 5,
        "num_attention_pooler_hidden_layers": 2,
        **_FULL_ATTENTION,
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
        "rope_theta": 1_000_000,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    },
    "vae": {
        "encoder_hidden_size": 128,
        "downsampling_ratios": [2, 4, 4, 6, 10],
        "channel_multiples": [1, 2, 4, 8, 16],
        "decoder_channels": 128,
        "decoder_input_channels": 64,
        "audio_channels": 2,
        "sampling_rate": 48000,
    },
}
FULL_FSQ_DIM = 2048


def _tokenizer() -> Any:
    return byte_level_bpe_tokenizer(
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), bos=None, eos="<|endoftext|>", pad="<|endoftext|>"
    )


def _full_components(variant: str) -> dict[str, Any]:
    """The full size's modules (FULL_ACE_STEP), constructed in bfloat16 on the current default device (pass
    `torch.device("meta")` to build none of the weights)."""
    from diffusers import AutoencoderOobleck
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )

    full = FULL_ACE_STEP
    with default_dtype(torch.bfloat16):
        components: dict[str, Any] = {
            # Qwen3-Embedding-0.6B's published shape; its tokenizer stays the small byte-level one (every id it
            # makes is < 300, inside the 151669-row embedding): the worker only tokenizes captions and lyrics.
            "text_encoder": Qwen3Model(Qwen3Config(**full["text_encoder"])),
            "vae": AutoencoderOobleck(**full["vae"]),
            "transformer": AceStepTransformer1DModel(
                **full["transformer"], is_turbo=variant == "turbo", model_version=variant
            ),
            "condition_encoder": AceStepConditionEncoder(**full["condition_encoder"]),
        }
        with_codes = variant != "turbo"  # as below: the turbo's diffusers layout has no audio tokenizer pair
        codes = full["audio_codes"]
        components["audio_tokenizer"] = AceStepAudioTokenizer(fsq_dim=FULL_FSQ_DIM, **codes) if with_codes else None
        components["audio_token_detokenizer"] = AceStepAudioTokenDetokenizer(**codes) if with_codes else None
    return components


def ace_step_components(size: str, variant: str = "base", xl: bool = False) -> dict[str, Any]:
    """AceStepPipeline's components at one size (tiny, bench, or full: the published 2B architecture, in
    bfloat16), without writing anything; built on the current default device."""
    from diffusers import AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )

    tokenizer = _tokenizer()
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    if size == "full":
        if xl:
            raise ValueError("the full size is the 2B architecture (the default checkpoint's); XL has tiny and bench")
        return {**_full_components(variant), "tokenizer": tokenizer, "scheduler": scheduler}
    hidden, layers, decoder_channels = _ACE_SIZES[size]
    heads = hidden // 8
    attention = {"num_attention_heads": heads, "num_key_value_heads": heads // 2, "head_dim": 8, "sliding_window": 16}
    dit_hidden = hidden * 3 // 2 if xl else hidden
    dit_heads = dit_hidden // 8
    dit_attention = attention | {"num_attention_heads": dit_heads, "num_key_value_heads": dit_heads // 2}
    text_encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads // 2,
            head_dim=8,
            max_position_embeddings=4096,
        )
    )
    vae = AutoencoderOobleck(
        encoder_hidden_size=128,
        downsampling_ratios=[2, 4, 4, 6, 10],
        channel_multiples=[1, 1, 1, 1, 1],
        decoder_channels=decoder_channels,
        decoder_input_channels=64,
        audio_channels=2,
        sampling_rate=48000,
    )
    transformer = AceStepTransformer1DModel(
        hidden_size=dit_hidden,
        intermediate_size=2 * dit_hidden,
        num_hidden_layers=layers,
        in_channels=192,  # noisy latents, source latents and mask, 64 each
        audio_acoustic_hidden_dim=64,
        patch_size=2,
        encoder_hidden_size=hidden,
        is_turbo=variant == "turbo",
        model_version=variant,
        **dit_attention,
    )
    condition_encoder = AceStepConditionEncoder(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        text_hidden_dim=hidden,
        timbre_hidden_dim=64,
        num_lyric_encoder_hidden_layers=1,
        num_timbre_encoder_hidden_layers=1,
        **attention,
    )
    # The 5 Hz semantic audio codes that cover (and audio_codes input) condition on; the published turbo
    # repository leaves them out (model_index.json names no such components).
    codes = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "audio_acoustic_hidden_dim": 64}
    codes |= {"pool_window_size": 5, "num_attention_pooler_hidden_layers": 1, **attention}
    with_codes = variant != "turbo"
    return {
        "audio_tokenizer": AceStepAudioTokenizer(fsq_dim=hidden, **codes) if with_codes else None,
        "audio_token_detokenizer": AceStepAudioTokenDetokenizer(**codes) if with_codes else None,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "transformer": transformer,
        "condition_encoder": condition_encoder,
        "scheduler": scheduler,
    }


def build_ace_step(target: Path, size: str, variant: str = "base", xl: bool = False) -> None:
    """The diffusers layout: model_index.json + vae/, text_encoder/, tokenizer/, transformer/,
    condition_encoder/, scheduler/, saved by AceStepPipeline.save_pretrained. `variant` is written where the
    published checkpoints keep it (the transformer's is_turbo and model_version); `xl` gives the XL
    structure: a DiT wider than the condition encoder (2560 over 2048 published; 1.5x here), projected up.
    `size` full: ACE-Step/acestep-v15-base's published architecture in bfloat16 (FULL_ACE_STEP): 6.32 GB written,
    each file the size of its published counterpart; measured on a 2-core CPU: 50 s, peak RSS 6.6 GiB."""
    from diffusers import AceStepPipeline

    pipeline = AceStepPipeline(**ace_step_components(size, variant, xl))
    pipeline.save_pretrained(target)


TINY_MODELS = (
    TinyModel("tiny-random/acestep-v15-base", build_ace_step),
    TinyModel(
        "tiny-random/acestep-v15-xl-turbo-diffusers",
        partial(build_ace_step, variant="turbo", xl=True),
        published=("ACE-Step/acestep-v15-xl-turbo-diffusers",),
    ),
    TinyModel(
        "tiny-random/acestep-v15-xl-sft-diffusers",
        partial(build_ace_step, variant="sft", xl=True),
        published=("ACE-Step/acestep-v15-xl-sft-diffusers",),
    ),
    TinyModel(
        "tiny-random/acestep-v15-xl-base-diffusers",
        partial(build_ace_step, variant="base", xl=True),
        serves_contract=False,  # the XL architecture is served by the two above
        published=("ACE-Step/acestep-v15-xl-base-diffusers",),
    ),
)

# scripts/gpu_check.py: the size it measures on a GPU (the default checkpoint's published architecture).
GPU_CHECK = {"size": "full", "architecture": "ACE-Step/acestep-v15-base"}

CONTRACT = ContractCase(
    job_input={"caption": "lo-fi hip hop, rhodes", "audio_duration": 1.0, "steps": 2, "batch_size": 2},
    output_count=2,
    locked={"steps": 3},
    bad_value=("bpm", 400, "bpm: Input should be less than or equal to 300"),
    bad_variable=("ACE_STEP_TASKS", "text2music,dance", "ACE_STEP_TASKS.1: Input should be 'text2music'"),
    fuzz_locks={"audio_duration": 1.0, "steps": 2, "batch_size": 1},
    long_job_input={"caption": "a long song", "audio_duration": 60.0, "steps": 200},
)


def build_ace_step_lora(pipeline_folder: Path, target: Path, rank: int = 4) -> Path:
    """A LoRA for a tiny pipeline's transformer (attention projections), in diffusers' LoRA format, with
    random up-projections so that it changes the output; written to target/pytorch_lora_weights.safetensors."""
    import torch
    from diffusers import AceStepPipeline
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = AceStepTransformer1DModel.from_pretrained(pipeline_folder / "transformer")
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v"]))
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    AceStepPipeline.save_lora_weights(target, transformer_lora_layers=get_peft_model_state_dict(transformer))
    return target / "pytorch_lora_weights.safetensors"


# The inverse of convert.py's renames, for writing a tiny pipeline back into ACE-Step's layout.
_ACE_ATTENTION_NAMES = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "norm_q": "q_norm", "norm_k": "k_norm"}
_ACE_PREFIXES = {
    "transformer": "decoder",
    "condition_encoder": "encoder",
    "audio_tokenizer": "tokenizer",
    "audio_token_detokenizer": "detokenizer",
}


def _authors_key(component: str, key: str) -> str:
    if component == "condition_encoder" and key == "null_condition_emb":
        return key
    key = key.replace(".to_out.0.", ".o_proj.")
    parts = [_ACE_ATTENTION_NAMES.get(part, part) for part in key.split(".")]
    if component == "transformer" and parts[0] in ("proj_in_conv", "proj_out_conv"):
        parts = [parts[0].removesuffix("_conv"), "1", *parts[1:]]
    return f"{_ACE_PREFIXES[component]}.{'.'.join(parts)}"


def build_authors_layout(
    target: Path, size: str = "tiny", variant: str = "base", xl: bool = False, built: Path | None = None
) -> Path:
    """A tiny checkpoint in ACE-Step's own layout (what ACE-Step/Ace-Step1.5 and ACE-Step/acestep-v15-<variant>
    publish), written by inverting convert.py's key mapping from the tiny diffusers pipeline: <DiT folder>/
    (config.json with model_type 'acestep', model.safetensors, silence_latent.pt), vae/, Qwen3-Embedding-0.6B/.
    The mapping itself is proved against ACE-Step's own classes by the reference tier (reference/), not here.
    `built`: the diffusers pipeline to write out (built here when None; its variant is not read). Returns the DiT
    folder."""
    import json
    import shutil
    import tempfile

    import torch
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory() as scratch:
        if built is None:
            built = Path(scratch)
            build_ace_step(built, size, "base", xl)  # every variant's DiT file holds the audio tokenizer pair
        dit = target / f"acestep-v15-{'xl-' if xl else ''}{variant}"
        dit.mkdir(parents=True)
        weights = {}
        for component in _ACE_PREFIXES:
            for key, tensor in load_file(built / component / "diffusion_pytorch_model.safetensors").items():
                if component == "condition_encoder" and key == "silence_latent":
                    # Published as [1, 64, frames]; some structure, so that a wrong transpose shows.
                    silence = torch.linspace(-1.0, 1.0, tensor.numel()).reshape(tensor.shape)
                    torch.save(silence.transpose(1, 2).contiguous(), dit / "silence_latent.pt")
                    continue
                weights[_authors_key(component, key)] = tensor
        save_file(weights, dit / "model.safetensors", metadata={"format": "pt"})
        transformer = json.loads((built / "transformer" / "config.json").read_text())
        encoder = json.loads((built / "condition_encoder" / "config.json").read_text())
        codes = json.loads((built / "audio_tokenizer" / "config.json").read_text())
        config = {
            "architectures": ["AceStepConditionGenerationModel"],
            "auto_map": {"AutoModel": f"modeling_acestep_v15_{variant}.AceStepConditionGenerationModel"},
            "model_type": "acestep",
            **{name: transformer[name] for name in ("hidden_size", "intermediate_size", "num_hidden_layers")},
            **{name: transformer[name] for name in ("num_attention_heads", "num_key_value_heads", "head_dim")},
            **{name: transformer[name] for name in ("in_channels", "audio_acoustic_hidden_dim", "patch_size")},
            **{name: transformer[name] for name in ("rope_theta", "attention_bias", "attention_dropout")},
            **{name: transformer[name] for name in ("rms_norm_eps", "sliding_window", "layer_types")},
            **{name: encoder[name] for name in ("text_hidden_dim", "timbre_hidden_dim")},
            **{name: encoder[name] for name in ("num_lyric_encoder_hidden_layers", "num_timbre_encoder_hidden_layers")},
            **{name: codes[name] for name in ("fsq_dim", "fsq_input_levels", "fsq_input_num_quantizers")},
            **{name: codes[name] for name in ("pool_window_size", "num_attention_pooler_hidden_layers")},
            "use_sliding_window": True,
            "model_version": variant,
            "is_turbo": variant == "turbo",
        }
        if xl:
            config |= {
                "encoder_hidden_size": encoder["hidden_size"],
                "encoder_intermediate_size": encoder["intermediate_size"],
            }
            config |= {"encoder_num_attention_heads": encoder["num_attention_heads"]}
            config |= {"encoder_num_key_value_heads": encoder["num_key_value_heads"]}
        (dit / "config.json").write_text(json.dumps(config, indent=2))
        (dit / f"modeling_acestep_v15_{variant}.py").write_text("# ACE-Step's modeling code: never run by the worker\n")
        shutil.copytree(built / "vae", target / "vae")
        text = target / "Qwen3-Embedding-0.6B"
        shutil.copytree(built / "text_encoder", text)
        for path in (built / "tokenizer").iterdir():
            shutil.copyfile(path, text / path.name)
        return dit
