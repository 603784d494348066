"""Boson AI's own Higgs Audio V2 layout: recognised (and the native layout not), refused at start-up with the command
that converts it, converted by the populator into folders the worker starts on and generates from, and any key the
converter does not know refused before a weight is written.

The Boson-format folders here are written by inverting the key mapping on the worker's tiny native models (the LM of
fixtures.py; a tokenizer of the same kind, its HuBERT 12-headed as Boson's teacher is), so they are Boson's layout and
key names, not checkpoints Boson's classes built (those fix widths no tiny model has). That the mapping reproduces
Boson's own classes is proven by the reference tier (handlers/higgs_audio/reference/, make test-reference).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from handlers.higgs_audio.adapter import HiggsAudio
from handlers.higgs_audio.catalog import CATALOG, TOKENIZER_NAME
from handlers.higgs_audio.config import HiggsAudioConfig
from handlers.higgs_audio.convert import (
    convert_audio_tokenizer,
    convert_lm,
    is_boson_audio_tokenizer,
    is_boson_lm,
)
from handlers.higgs_audio.fixtures import build_higgs_audio
from scripts.populate_volume import CONVERSION_LOG
from scripts.populate_volume import main as populate
from shared.errors import ModelFilesError
from shared.pipeline import Worker
from shared.settings import Settings

RATIOS = [8, 5, 4, 2, 3]
BOSON_TOKENIZER_CONFIG = {
    "n_filters": 32,
    "D": 16,
    "codebook_dim": 8,
    "target_bandwidths": [0.5, 1, 1.5, 2, 4],
    "ratios": RATIOS,
    "sample_rate": 24000,
    "bins": 1024,
    "n_q": 8,
    "semantic_techer": "hubert_base_general",
}
UNITS = ("snake1", "conv1", "snake2", "conv2")


# --- Boson's layout, written from native tiny models (the inverse of the mapping, spelled out independently) ---


def _boson_lm_key(key: str) -> str:
    for native, boson in (
        ("model.embed_audio_tokens.embed_audio_tokens.", "audio_codebook_embeddings."),
        ("model.", ""),
        ("audio_lm_head.", "audio_decoder_proj.audio_lm_head."),
        ("text_lm_head.", "audio_decoder_proj.text_lm_head."),
    ):
        if key.startswith(native):
            return boson + key[len(native) :]
    raise AssertionError(key)


def write_boson_lm(native: Path, target: Path) -> dict[str, torch.Tensor]:
    """Boson's LM layout from a native tiny LM; returns the native tensors it holds."""
    config = json.loads((native / "config.json").read_text())
    tensors = load_file(native / "model.safetensors")
    rope = {key: value for key, value in config["rope_parameters"].items() if key != "rope_theta"}
    boson = {
        "model_type": "higgs_audio",
        "architectures": ["HiggsAudioModel"],
        "text_config": {
            "model_type": "llama",
            **{
                key: config[key]
                for key in (
                    "vocab_size",
                    "hidden_size",
                    "intermediate_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "num_key_value_heads",
                    "head_dim",
                    "hidden_act",
                    "max_position_embeddings",
                    "rms_norm_eps",
                )
            },
            "rope_theta": config["rope_parameters"]["rope_theta"],
            "rope_scaling": rope,
            "tie_word_embeddings": True,
        },
        "audio_adapter_type": "dual_ffn_fast_forward",
        "audio_dual_ffn_layers": list(range(config["num_hidden_layers"])),
        "audio_decoder_proj_num_layers": 0,
        "audio_num_codebooks": config["num_codebooks"],
        "audio_codebook_size": config["codebook_size"] - 2,
        "audio_stream_bos_id": config["audio_stream_bos_id"],
        "audio_stream_eos_id": config["audio_stream_eos_id"],
        "audio_out_token_idx": config["audio_token_id"],
        "audio_out_bos_token_id": config["audio_bos_token_id"],
        "pad_token_id": config["pad_token_id"],
        "encode_audio_in_tokens": True,
        "encode_whisper_embed": False,
        "skip_audio_tower": True,
        "use_delay_pattern": True,
        "use_audio_out_embed_projector": False,
        "use_audio_out_self_attention": 0,
        "use_rq_transformer": False,
        "torch_dtype": "float32",
    }
    target.mkdir(parents=True)
    (target / "config.json").write_text(json.dumps(boson, indent=2))
    generator = torch.Generator().manual_seed(0)
    text_head = torch.randn(config["vocab_size"], config["hidden_size"], generator=generator)  # Boson always has one
    save_file(
        {
            **{_boson_lm_key(key): value for key, value in tensors.items()},
            "audio_decoder_proj.text_lm_head.weight": text_head,
        },
        target / "model.safetensors",
        metadata={"format": "pt"},
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (native / name).is_file():
            shutil.copyfile(native / name, target / name)
    return tensors


def build_native_tokenizer(target: Path) -> None:
    """A tiny native audio tokenizer whose HuBERT is 12-headed, as Boson's teacher (bosonai/hubert_base) is."""
    from transformers import (
        DacConfig,
        DacFeatureExtractor,
        HiggsAudioV2TokenizerConfig,
        HiggsAudioV2TokenizerModel,
        HubertConfig,
    )

    torch.manual_seed(0)
    model = HiggsAudioV2TokenizerModel(
        HiggsAudioV2TokenizerConfig(
            sample_rate=24000,
            target_bandwidths=[0.5, 1, 1.5, 2],
            codebook_size=1024,
            codebook_dim=8,
            acoustic_model_config=DacConfig(
                encoder_hidden_size=4,
                downsampling_ratios=RATIOS,
                upsampling_ratios=RATIOS,
                decoder_hidden_size=64,
                hidden_size=16,
                sampling_rate=24000,
            ),
            semantic_model_config=HubertConfig(
                hidden_size=24,
                num_hidden_layers=1,
                num_attention_heads=12,
                intermediate_size=32,
                conv_dim=[8] * 7,
                num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2,
                mask_time_prob=0.0,
            ),
        )
    )
    for quantizer in model.quantizer.quantizers:  # spread codebooks, as trained ones are
        quantizer.codebook.embed.normal_()
        quantizer.codebook.embed_avg.copy_(quantizer.codebook.embed)
    model.save_pretrained(target)
    DacFeatureExtractor(feature_size=1, sampling_rate=24000, hop_length=960).save_pretrained(target)


def _boson_tokenizer_key(key: str) -> str:
    stages = len(RATIOS)
    rules = (
        (r"acoustic_encoder\.conv1\.(.+)", lambda m: f"encoder.block.0.{m[1]}"),
        (
            r"acoustic_encoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)",
            lambda m: f"encoder.block.{int(m[1]) + 1}.block.{int(m[2]) - 1}.block.{UNITS.index(m[3])}.{m[4]}",
        ),  # fmt: skip
        (r"acoustic_encoder\.block\.(\d+)\.snake1\.(.+)", lambda m: f"encoder.block.{int(m[1]) + 1}.block.3.{m[2]}"),
        (r"acoustic_encoder\.block\.(\d+)\.conv1\.(.+)", lambda m: f"encoder.block.{int(m[1]) + 1}.block.4.{m[2]}"),
        (r"acoustic_encoder\.snake1\.(.+)", lambda m: f"encoder.block.{stages + 1}.{m[1]}"),
        (r"acoustic_encoder\.conv2\.(.+)", lambda m: f"encoder.block.{stages + 2}.{m[1]}"),
        (r"acoustic_decoder\.conv1\.(.+)", lambda m: f"decoder_2.model.0.{m[1]}"),
        (r"acoustic_decoder\.block\.(\d+)\.snake1\.(.+)", lambda m: f"decoder_2.model.{int(m[1]) + 1}.block.0.{m[2]}"),
        (r"acoustic_decoder\.block\.(\d+)\.conv_t1\.(.+)", lambda m: f"decoder_2.model.{int(m[1]) + 1}.block.1.{m[2]}"),
        (
            r"acoustic_decoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)",
            lambda m: f"decoder_2.model.{int(m[1]) + 1}.block.{int(m[2]) + 1}.block.{UNITS.index(m[3])}.{m[4]}",
        ),  # fmt: skip
        (r"acoustic_decoder\.snake1\.(.+)", lambda m: f"decoder_2.model.{stages + 1}.{m[1]}"),
        (r"acoustic_decoder\.conv2\.(.+)", lambda m: f"decoder_2.model.{stages + 2}.{m[1]}"),
        (r"quantizer\.quantizers\.(\d+)\.codebook\.(.+)", lambda m: f"quantizer.vq.layers.{m[1]}._codebook.{m[2]}"),
        (r"quantizer\.quantizers\.(\d+)\.(.+)", lambda m: f"quantizer.vq.layers.{m[1]}.{m[2]}"),
        (r"fc\.(.+)", lambda m: f"fc_prior.{m[1]}"),
        (r"fc1\.(.+)", lambda m: f"fc_post1.{m[1]}"),
        (r"fc2\.(.+)", lambda m: f"fc_post2.{m[1]}"),
        # Boson's semantic convs are wrapped (a module holding `.conv`), but for the residual units' 1x1 conv2.
        (r"((?:en|de)coder_semantic\..*res_units\.\d+\.conv2\..+)", lambda m: m[1]),
        (
            r"((?:en|de)coder_semantic(?:\..*)?)\.(conv|conv1|conv2)\.(weight|bias)",
            lambda m: f"{m[1]}.{m[2]}.conv.{m[3]}",
        ),  # fmt: skip
        (r"(semantic_model\..+)", lambda m: m[1]),
    )
    for pattern, rename in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return rename(match)
    raise AssertionError(key)


def write_boson_tokenizer(native: Path, target: Path) -> dict[str, torch.Tensor]:
    """Boson's tokenizer layout (config.json + model.pth, weight-normed DAC convs, HuBERT's positional conv as
    weight_g/weight_v as older saves hold it) from a native tiny tokenizer; returns the native tensors."""
    tensors = load_file(native / "model.safetensors")
    state = {}
    for key, value in tensors.items():
        boson = _boson_tokenizer_key(key)
        if boson.startswith(("encoder.block", "decoder_2.model")) and boson.endswith(".weight") and value.dim() == 3:
            norm = value.flatten(1).norm(dim=1).reshape(-1, 1, 1)
            state[boson.removesuffix("weight") + "weight_g"], state[boson.removesuffix("weight") + "weight_v"] = (
                norm,
                value,
            )
        elif ".parametrizations.weight.original" in boson:
            older = boson.replace("parametrizations.weight.original0", "weight_g")
            state[older.replace("parametrizations.weight.original1", "weight_v")] = value
        else:
            state[boson] = value
    target.mkdir(parents=True)
    (target / "config.json").write_text(json.dumps(BOSON_TOKENIZER_CONFIG, indent=2))
    torch.save(state, target / "model.pth")
    return tensors


@pytest.fixture(scope="module")
def boson(tmp_path_factory) -> dict[str, Path]:
    """Native tiny folders and their Boson-layout twins."""
    root = tmp_path_factory.mktemp("boson")
    native_lm = root / "native" / "org" / "tiny"
    build_higgs_audio(native_lm, "tiny")
    native_tokenizer = root / "native" / "tokenizer"
    build_native_tokenizer(native_tokenizer)
    write_boson_lm(native_lm, root / "boson" / "lm")
    write_boson_tokenizer(native_tokenizer, root / "boson" / "tokenizer")
    return {
        "native_lm": native_lm,
        "native_tokenizer": native_tokenizer,
        "lm": root / "boson" / "lm",
        "tokenizer": root / "boson" / "tokenizer",
    }


# --- tests ---


@pytest.mark.unit
def test_the_renamed_repository_is_known_under_both_names():
    assert CATALOG.names("bosonai/higgs-audio-v2-generation-3B-base") == (
        "bosonai/higgs-audio-v2-generation-3B-base",
        "bosonai/higgs-tts-2-3b-base",
    )
    assert CATALOG.names("bosonai/higgs-tts-2-3b-base")[1:] == ("bosonai/higgs-audio-v2-generation-3B-base",)


@pytest.mark.tiny
def test_boson_layouts_are_recognised_and_the_native_ones_are_not(boson):
    assert is_boson_lm(boson["lm"]) and is_boson_audio_tokenizer(boson["tokenizer"])
    assert not is_boson_audio_tokenizer(boson["lm"]) and not is_boson_lm(boson["tokenizer"])
    for native in (boson["native_lm"], boson["native_lm"].parent / TOKENIZER_NAME, boson["native_tokenizer"]):
        assert not is_boson_lm(native) and not is_boson_audio_tokenizer(native)


@pytest.mark.tiny
def test_conversion_gives_back_the_native_tensors_with_a_log_of_what_was_mapped(boson, tmp_path):
    lm_log = convert_lm(boson["lm"], tmp_path / "lm")
    native = load_file(boson["native_lm"] / "model.safetensors")
    converted = load_file(tmp_path / "lm" / "model.safetensors")
    assert converted.keys() == native.keys() | {"text_lm_head.weight"}
    assert all(torch.equal(converted[key], value) for key, value in native.items())
    layers = json.loads((boson["native_lm"] / "config.json").read_text())["num_hidden_layers"]
    assert f"weights: {14 * layers} x layers.* -> model.layers.*" in lm_log
    assert "config: audio_codebook_size -> codebook_size = 1026 (+2: stream bos, eos)" in lm_log
    config = json.loads((tmp_path / "lm" / "config.json").read_text())
    expected = json.loads((boson["native_lm"] / "config.json").read_text())
    for key in (
        "model_type",
        "audio_token_id",
        "audio_bos_token_id",
        "audio_delay_token_id",
        "eos_token_id",
        "bos_token_id",
    ):
        assert config[key] == expected[key], key

    tokenizer_log = convert_audio_tokenizer(boson["tokenizer"], tmp_path / "tokenizer")
    native = load_file(boson["native_tokenizer"] / "model.safetensors")
    converted = load_file(tmp_path / "tokenizer" / "model.safetensors")
    assert converted.keys() == native.keys()
    # Weight norm folded back: equal to rounding.
    assert all(torch.allclose(converted[key], value, atol=1e-6, rtol=1e-5) for key, value in native.items())
    folded = r"weights: \d+ x acoustic decoder residual units \(weight norm folded into the weight\)"
    assert any(re.fullmatch(folded, line) for line in tokenizer_log)
    bandwidths = "target_bandwidths [0.5, 1, 1.5, 2, 4] -> [0.5, 1, 1.5, 2] (8 quantizers at 25 frames/s x 10 bits"
    assert f"config: n_q = 8, {bandwidths} = 2.0 kbps)" in tokenizer_log
    assert (tmp_path / "tokenizer" / "preprocessor_config.json").is_file()


@pytest.mark.tiny
def test_a_boson_folder_is_refused_at_start_up_with_the_command_that_converts_it(boson, tmp_path):
    volume = tmp_path / "volume"
    shutil.copytree(boson["lm"], volume / "higgs_audio" / "org" / "tiny")
    shutil.copytree(boson["native_lm"].parent / TOKENIZER_NAME, volume / "higgs_audio" / "org" / TOKENIZER_NAME)
    settings = Settings(volume_root=volume, model_id="org/tiny", output_dir=tmp_path)
    command = "convert it with: python scripts/populate_volume.py higgs_audio --model-id org/tiny .*--from "
    with pytest.raises(ModelFilesError, match=rf"holds Boson AI's own Higgs Audio format .* {command}"):
        Worker(HiggsAudio, settings, HiggsAudioConfig()).start()
    # The LM converted, the audio tokenizer still Boson's: refused the same way, naming the tokenizer.
    shutil.rmtree(volume / "higgs_audio" / "org" / "tiny")
    convert_lm(boson["lm"], volume / "higgs_audio" / "org" / "tiny")
    shutil.rmtree(volume / "higgs_audio" / "org" / TOKENIZER_NAME)
    shutil.copytree(boson["tokenizer"], volume / "higgs_audio" / "org" / TOKENIZER_NAME)
    command = f"--model-id org/{TOKENIZER_NAME} .*--from "
    with pytest.raises(ModelFilesError, match=rf"holds Boson AI's own audio tokenizer format .* {command}"):
        Worker(HiggsAudio, settings, HiggsAudioConfig()).start()


@pytest.mark.tiny
def test_the_populator_converts_both_folders_and_the_worker_generates_under_the_renamed_repository(boson, tmp_path):
    volume = tmp_path / "volume"
    old_name = "bosonai/higgs-audio-v2-generation-3B-base"
    for folder, model_id in ((boson["lm"], old_name), (boson["tokenizer"], f"bosonai/{TOKENIZER_NAME}")):
        assert populate(["higgs_audio", "--from", str(folder), "--model-id", model_id, "--volume", str(volume)]) == 0
    lm = volume / "higgs_audio" / old_name
    log = (lm / CONVERSION_LOG).read_text()
    assert "weights: 1 x audio_codebook_embeddings -> model.embed_audio_tokens.embed_audio_tokens" in log
    assert (volume / "higgs_audio" / "bosonai" / TOKENIZER_NAME / CONVERSION_LOG).is_file()
    assert is_boson_lm(boson["lm"])  # the source folder is left as it was
    # MODEL_ID names the repository's current name; the folder carries the old one.
    settings = Settings(volume_root=volume, model_id="bosonai/higgs-tts-2-3b-base", output_dir=tmp_path / "out")
    worker = Worker(HiggsAudio, settings, HiggsAudioConfig())
    job = {"transcript": "Converted, then spoken.", "max_new_tokens": 40, "seed": 3}
    result = worker.run({"id": "converted", "input": job})
    assert "error" not in result, result
    assert result["details"]["chunks"][0]["frames"] > 0


@pytest.mark.tiny
def test_partially_frozen_halves_are_merged(boson, tmp_path):
    split = tmp_path / "split"
    shutil.copytree(boson["lm"], split)
    tensors = load_file(split / "model.safetensors")
    for whole, frozen, trainable in (
        ("embed_tokens.weight", "embed_tokens.embedding_frozen.weight", "embed_tokens.embedding_trainable.weight"),
        (
            "audio_decoder_proj.text_lm_head.weight",
            "audio_decoder_proj.text_lm_head.linear_frozen.weight",
            "audio_decoder_proj.text_lm_head.linear_trainable.weight",
        ),  # fmt: skip
    ):
        value = tensors.pop(whole)
        tensors[frozen], tensors[trainable] = value[:200].clone(), value[200:].clone()
    save_file(tensors, split / "model.safetensors", metadata={"format": "pt"})
    log = convert_lm(split, tmp_path / "merged")
    convert_lm(boson["lm"], tmp_path / "whole")
    merged, whole = (
        load_file(tmp_path / "merged" / "model.safetensors"),
        load_file(tmp_path / "whole" / "model.safetensors"),
    )
    assert merged.keys() == whole.keys() and all(torch.equal(merged[key], whole[key]) for key in whole)
    assert "weights: 1 x PartiallyFrozen halves merged: embed_tokens.weight" in log


@pytest.mark.tiny
def test_an_unknown_or_missing_key_is_refused_before_anything_is_written(boson, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(boson["lm"], changed)
    tensors = load_file(changed / "model.safetensors")
    extra = "layers.0.audio_attn.q_proj.weight"  # Boson's separate audio attention, which the native model lacks
    save_file({**tensors, extra: tensors["layers.0.self_attn.q_proj.weight"].clone()}, changed / "model.safetensors")
    with pytest.raises(ValueError, match=rf"changed/model.safetensors: key '{extra}' has no place in the native model"):
        convert_lm(changed, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    tensors.pop("layers.1.audio_mlp.up_proj.weight")
    save_file(tensors, changed / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing weights for model.layers.1.audio_mlp.up_proj.weight"):
        convert_lm(changed, tmp_path / "out")

    tokenizer = tmp_path / "tokenizer"
    shutil.copytree(boson["tokenizer"], tokenizer)
    state = torch.load(tokenizer / "model.pth", weights_only=True)
    torch.save({**state, "quantizer.vq.layers.0._codebook.extra": torch.zeros(1)}, tokenizer / "model.pth")
    unknown = "key\\(s\\) with no place in the native tokenizer: quantizer.vq.layers.0._codebook.extra"
    with pytest.raises(ValueError, match=rf"tokenizer/model.pth: {unknown}"):
        convert_audio_tokenizer(tokenizer, tmp_path / "tokenizer-out")
    assert not (tmp_path / "tokenizer-out").exists()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"audio_dual_ffn_layers": [0]}, "a dual FFN in every one of the 2 layers"),
        ({"use_audio_out_self_attention": 1}, "use_audio_out_self_attention = 1, which the native classes cannot"),
        ({"use_delay_pattern": False}, "use_delay_pattern = False"),
        ({"skip_audio_tower": False, "encode_whisper_embed": True}, "Whisper audio tower"),
    ],
)
def test_a_config_the_native_model_cannot_reproduce_is_refused(tmp_path, change, message):
    folder = tmp_path / "lm"
    folder.mkdir()
    config = {
        "model_type": "higgs_audio",
        "text_config": {
            "vocab_size": 8,
            "hidden_size": 8,
            "intermediate_size": 8,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },  # fmt: skip
        "audio_adapter_type": "dual_ffn_fast_forward",
        "audio_dual_ffn_layers": [0, 1],
        "use_delay_pattern": True,
        "encode_audio_in_tokens": True,
        "skip_audio_tower": True,
    }
    (folder / "config.json").write_text(json.dumps(config | change))
    with pytest.raises(ValueError, match=re.escape(message)):
        convert_lm(folder, tmp_path / "out")
