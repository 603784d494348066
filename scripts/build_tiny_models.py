"""Build random-weight checkpoints of the real architectures, in the real on-disk layout, offline.

    python scripts/build_tiny_models.py --volume .volume            # every tiny model
    python scripts/build_tiny_models.py --volume .volume musicgen   # one of them

Each model is written to <volume>/<handler>/<MODEL_ID> with `save_pretrained`, exactly where the
handler resolves MODEL_ID, so tests and the demo load it through the production code. The `bench`
size is large enough for generation to take seconds, for scripts/benchmark.py.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    DacConfig,
    DacFeatureExtractor,
    EncodecConfig,
    EncodecFeatureExtractor,
    HiggsAudioV2Config,
    HiggsAudioV2ForConditionalGeneration,
    HiggsAudioV2TokenizerConfig,
    HiggsAudioV2TokenizerModel,
    HubertConfig,
    LlamaTokenizerFast,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenMelodyConfig,
    MusicgenMelodyDecoderConfig,
    MusicgenMelodyFeatureExtractor,
    MusicgenMelodyForConditionalGeneration,
    MusicgenMelodyProcessor,
    MusicgenProcessor,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3Model,
    T5Config,
    T5TokenizerFast,
)

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
}


def _t5_tokenizer() -> T5TokenizerFast:
    """A real T5 (Unigram) tokenizer built from an in-memory vocabulary, no download."""
    pieces = ["▁" + word for word in ("lo", "fi", "beat", "piano", "drum", "bass", "with", "and", "bpm")]
    symbols = list(string.ascii_lowercase + string.digits + ",.-'!?") + ["▁"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -1.0 - i * 0.01) for i, p in enumerate(pieces)]
    vocab += [(s, -5.0 - i * 0.01) for i, s in enumerate(symbols)]
    return T5TokenizerFast(vocab=vocab, extra_ids=0)


def _musicgen_parts(size: str, tokenizer: T5TokenizerFast, decoder_class=MusicgenDecoderConfig) -> dict:
    (t_dim, t_layers, t_heads), (d_dim, d_layers, d_heads), (e_hidden, e_filters) = _SIZES[size].values()
    text = T5Config(
        vocab_size=len(tokenizer),
        d_model=t_dim,
        d_kv=t_dim // t_heads,
        d_ff=2 * t_dim,
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
        num_lstm_layers=1,
    )
    decoder = decoder_class(
        vocab_size=2048,
        hidden_size=d_dim,
        num_hidden_layers=d_layers,
        num_attention_heads=d_heads,
        ffn_dim=4 * d_dim,
        num_codebooks=4,
        audio_channels=1,
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


def build_musicgen(target: Path, size: str) -> None:
    tokenizer = _t5_tokenizer()
    model = MusicgenForConditionalGeneration(MusicgenConfig(**_musicgen_parts(size, tokenizer)))
    _randomize_codebooks(model.audio_encoder)
    _published_generation_config(model)
    processor = MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=32000, padding_value=0.0),
        tokenizer=tokenizer,
    )
    model.save_pretrained(target)
    processor.save_pretrained(target)


def build_musicgen_melody(target: Path, size: str) -> None:
    """musicgen-melody: the decoder is also conditioned on a 12-bin chromagram of the melody audio
    (the published feature extractor settings: n_fft 16384, hop 4096, 30 s chunks)."""
    tokenizer = _t5_tokenizer()
    config = MusicgenMelodyConfig(**_musicgen_parts(size, tokenizer, MusicgenMelodyDecoderConfig), num_chroma=12)
    model = MusicgenMelodyForConditionalGeneration(config)
    _randomize_codebooks(model.audio_encoder)
    _published_generation_config(model)
    processor = MusicgenMelodyProcessor(feature_extractor=MusicgenMelodyFeatureExtractor(), tokenizer=tokenizer)
    model.save_pretrained(target)
    processor.save_pretrained(target)


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


def _byte_level_bpe_tokenizer(
    special_tokens: tuple[str, ...], bos: str | None, eos: str, pad: str
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (Llama-3's and Qwen's kind) over the 256 byte symbols, built offline."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = bos, eos, pad
    return tokenizer


def build_higgs_audio(target: Path, size: str) -> None:
    """Two folders, as published: the LM (generation) and the audio tokenizer beside it."""
    hidden, layers, heads, kv_heads = _HIGGS_SIZES[size]
    tokenizer = _byte_level_bpe_tokenizer(
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
    tokenizer_folder = target.parent / "higgs-audio-v2-tokenizer"
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

    hidden, layers, heads, kv_heads = _VOXCPM_SIZES[size]
    tokenizer = _voxcpm_tokenizer()
    local = {"hidden_dim": hidden, "ffn_dim": 2 * hidden, "num_heads": heads, "num_layers": 1}
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
        "audio_vae_config": {"encoder_dim": 8, "latent_dim": 64, "decoder_dim": 64, **_VOXCPM_AUDIO[architecture]},
        "max_length": 1024,
        "device": "cpu",
        "dtype": "float32",
    }
    if architecture == "voxcpm2":
        parsed = VoxCPMConfig.model_validate(config)
        model = VoxCPM2Model(parsed, tokenizer, AudioVAEV2(config=parsed.audio_vae_config), device="cpu")
    else:
        parsed = VoxCPM15Config.model_validate(config)
        model = VoxCPMModel(parsed, tokenizer, AudioVAE(config=parsed.audio_vae_config), device="cpu")
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    target.mkdir(parents=True, exist_ok=True)
    save_file({k: v for k, v in state.items() if not k.startswith("audio_vae.")}, target / "model.safetensors")
    vae = {k.removeprefix("audio_vae."): v for k, v in state.items() if k.startswith("audio_vae.")}
    save_file(vae, target / "audiovae.safetensors")
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_pretrained(target)


def build_voxcpm2(target: Path, size: str) -> None:
    _build_voxcpm(target, size, "voxcpm2")


def build_voxcpm15(target: Path, size: str) -> None:
    _build_voxcpm(target, size, "voxcpm")


# ACE-Step 1.5's audio side as published: AutoencoderOobleck, 48 kHz stereo, downsampling 2*4*4*6*10 =
# 1920 (25 latent frames/s), 64-dim latents (the encoder's output is 2 x 64: mean and scale).
_ACE_SIZES = {"tiny": (32, 2, 8), "bench": (512, 8, 64)}  # DiT/text hidden, layers, VAE decoder channels


def build_ace_step(target: Path, size: str) -> None:
    """The diffusers layout: model_index.json + vae/, text_encoder/, tokenizer/, transformer/,
    condition_encoder/, scheduler/, saved by AceStepPipeline.save_pretrained."""
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )

    hidden, layers, decoder_channels = _ACE_SIZES[size]
    heads = hidden // 8
    attention = {"num_attention_heads": heads, "num_key_value_heads": heads // 2, "head_dim": 8, "sliding_window": 16}
    tokenizer = _byte_level_bpe_tokenizer(
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), bos=None, eos="<|endoftext|>", pad="<|endoftext|>"
    )
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
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        in_channels=192,  # noisy latents, source latents and mask, 64 each
        audio_acoustic_hidden_dim=64,
        patch_size=2,
        **attention,
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
    # The 5 Hz semantic audio codes that cover (and audio_codes input) condition on.
    codes = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "audio_acoustic_hidden_dim": 64}
    codes |= {"pool_window_size": 5, "num_attention_pooler_hidden_layers": 1, **attention}
    pipeline = AceStepPipeline(
        audio_tokenizer=AceStepAudioTokenizer(fsq_dim=hidden, **codes),
        audio_token_detokenizer=AceStepAudioTokenDetokenizer(**codes),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        condition_encoder=condition_encoder,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0),
    )
    pipeline.save_pretrained(target)


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


@dataclass(frozen=True)
class TinyModel:
    handler: str  # folder under the volume root
    model_id: str  # the MODEL_ID a worker is started with
    builder: Callable[[Path, str], None]


BUILDERS: dict[str, TinyModel] = {
    "musicgen": TinyModel("musicgen", "tiny-random/musicgen", build_musicgen),
    "musicgen-melody": TinyModel("musicgen", "tiny-random/musicgen-melody", build_musicgen_melody),
    "higgs_audio": TinyModel("higgs_audio", "tiny-random/higgs-audio-v2-generation", build_higgs_audio),
    "voxcpm": TinyModel("voxcpm", "tiny-random/VoxCPM2", build_voxcpm2),
    "voxcpm-1.5": TinyModel("voxcpm", "tiny-random/VoxCPM1.5", build_voxcpm15),
    "ace_step": TinyModel("ace_step", "tiny-random/acestep-v15-base-diffusers", build_ace_step),
}


def build(volume: Path, names: list[str], size: str) -> list[Path]:
    torch.manual_seed(0)
    built = []
    for name in names:
        entry = BUILDERS[name]
        model_id = entry.model_id if size == "tiny" else entry.model_id.replace("tiny-random", f"{size}-random")
        target = volume / entry.handler / model_id
        entry.builder(target, size)
        built.append(target)
        print(f"built {name} ({size}) at {target}")
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", metavar="MODEL", help=f"some of {', '.join(BUILDERS)}; default: all")
    parser.add_argument("--volume", type=Path, default=Path(".volume"), help="volume root to write into")
    parser.add_argument("--size", choices=list(_SIZES), default="tiny")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(BUILDERS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    build(args.volume, args.models or list(BUILDERS), args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
