"""Boson AI's own Higgs Audio V2 format -> the layout transformers' native classes load (the populator's converter).

Boson published the model in the format of its own package, boson-multimodal (github.com/boson-ai/higgs-audio):

- the LM: config.json with model_type "higgs_audio", the Llama backbone in a nested `text_config`, every layer a
  dual-FFN layer (`audio_mlp`, `audio_input_layernorm`, `audio_post_attention_layernorm` beside the text ones),
  safetensors keys without a `model.` prefix (`layers.N.*`, `embed_tokens`, `norm`, `audio_codebook_embeddings`,
  `audio_decoder_proj.{audio,text}_lm_head`; a fine-tune saved with Boson's PartiallyFrozen modules splits the
  embedding and the heads into `*_frozen`/`*_trainable` halves), Llama-3 tokenizer files beside them;
- the audio tokenizer: config.json (HiggsAudioTokenizer's constructor arguments: D, ratios, n_q, bins, ...) and
  model.pth (its pickled state dict: a DAC acoustic encoder/decoder with weight norm, a HuBERT teacher, the
  semantic encoder/decoder, the residual VQ).

transformers' HiggsAudioV2ForConditionalGeneration / HiggsAudioV2TokenizerModel + DacFeatureExtractor read
another layout (model_type higgs_audio_v2 / higgs_audio_v2_tokenizer, renamed keys, plain conv weights,
preprocessor_config.json). The key mappings were learned from transformers' conversion scripts
(src/transformers/models/higgs_audio_v2/convert_higgs_audio_v2_to_hf.py and
higgs_audio_v2_tokenizer/convert_higgs_audio_v2_tokenizer_to_hf.py) and Boson's classes; this code is our own.
Every tensor is accounted for: a key with no place in the native model, a missing one or a shape that differs is a
ValueError naming the file and the key, raised before any weight is written.

Heavy imports (torch, safetensors, transformers) happen inside the converters: the catalog imports this module.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

LM_FORMAT = "Boson AI's own Higgs Audio format (config.json model_type 'higgs_audio')"
AUDIO_TOKENIZER_FORMAT = "Boson AI's own audio tokenizer format (config.json of HiggsAudioTokenizer + model.pth)"

# The tokens the native processor finds by name; the converted config's ids must be theirs.
AUDIO_OUT_TOKEN = "<|AUDIO_OUT|>"
AUDIO_OUT_BOS_TOKEN = "<|audio_out_bos|>"
AUDIO_DELAY_TOKEN = "<|reserved_special_token_6|>"  # the native processor's default delay token (Llama-3's 128014)
BOS_TOKEN, EOT_TOKEN = "<|begin_of_text|>", "<|eot_id|>"
# Boson's tokenizer config keys: HiggsAudioTokenizer.__init__'s arguments.
_TOKENIZER_ARGUMENTS = {
    "n_filters",
    "D",
    "target_bandwidths",
    "ratios",
    "sample_rate",
    "bins",
    "n_q",
    "codebook_dim",
    "normalize",
    "causal",
    "semantic_techer",
    "last_layer_semantic",
    "merge_mode",
    "downsample_mode",
    "semantic_mode",
    "vq_scale",
    "semantic_sample_rate",
}
_WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors")
_LLAMA_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def _config(folder: Path) -> dict[str, Any] | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def is_boson_lm(folder: Path) -> bool:
    """Boson's LM layout: its config.json names model_type 'higgs_audio' (the native one is 'higgs_audio_v2')."""
    config = _config(folder)
    return config is not None and config.get("model_type") == "higgs_audio"


def is_boson_audio_tokenizer(folder: Path) -> bool:
    """Boson's tokenizer layout: a config.json of HiggsAudioTokenizer's arguments, with no model_type (the native
    one has model_type 'higgs_audio_v2_tokenizer')."""
    config = _config(folder)
    return config is not None and "model_type" not in config and {"n_q", "ratios", "sample_rate"} <= config.keys()


def _fail(where: Path | str, problem: str) -> ValueError:
    return ValueError(f"{where}: {problem}")


def _listed(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


# ----------------------------------------------------------------------------------------------------------- the LM


def _require(config: dict[str, Any], where: Path, field: str, allowed: tuple[Any, ...], why: str) -> None:
    if config.get(field) not in allowed:
        raise _fail(where, f"{field} = {config.get(field)!r}, which the native classes cannot reproduce ({why})")


def _token_ids(source: Path, names: Iterable[str]) -> dict[str, int]:
    from tokenizers import Tokenizer

    path = source / "tokenizer.json"
    if not path.is_file():
        raise _fail(path, "missing: the text tokenizer (Llama-3's tokenizer.json) belongs beside the LM")
    tokenizer = Tokenizer.from_file(str(path))
    ids = {name: tokenizer.token_to_id(name) for name in names}
    unknown = [name for name, token in ids.items() if token is None]
    if unknown:
        raise _fail(path, f"has no token {', '.join(unknown)}, which Higgs prompts need")
    return ids  # type: ignore[return-value]


def _native_lm_config(source: Path) -> tuple[Any, list[str]]:
    """The native HiggsAudioV2Config for a Boson config.json, and one log line per field it maps."""
    from transformers import HiggsAudioV2Config

    where = source / "config.json"
    config = _config(source)
    if config is None or config.get("model_type") != "higgs_audio":
        raise _fail(where, "not a Boson Higgs Audio config (model_type 'higgs_audio')")
    text = config.get("text_config")
    if not isinstance(text, dict) or text.get("model_type", "llama") != "llama":
        raise _fail(where, f"text_config must be a Llama config, got {text!r:.80}")
    layers = text.get("num_hidden_layers")
    # What the native model does not implement, each of which would change the output.
    _require(config, where, "audio_adapter_type", ("dual_ffn", "dual_ffn_fast_forward"), "its layers are dual-FFN")
    if sorted(config.get("audio_dual_ffn_layers") or []) != list(range(layers or 0)):
        raise _fail(
            where,
            f"audio_dual_ffn_layers = {config.get('audio_dual_ffn_layers')!r}: the native model has a dual FFN in "
            f"every one of the {layers} layers",
        )
    _require(config, where, "use_audio_out_self_attention", (False, 0, None), "it has no separate audio attention")
    _require(config, where, "use_audio_out_embed_projector", (False, None), "it has no audio-out embed projector")
    _require(config, where, "audio_decoder_proj_num_layers", (0, None), "its heads are plain linear layers")
    _require(config, where, "use_rq_transformer", (False, None), "it decodes codebooks with the delay pattern")
    _require(config, where, "use_delay_pattern", (True,), "it always generates with the delay pattern")
    _require(config, where, "audio_embed_avg", (False, None), "it sums the codebook embeddings")
    _require(config, where, "encode_audio_in_tokens", (True,), "reference audio enters as audio tokens")
    if not config.get("skip_audio_tower") and config.get("encode_whisper_embed", True):
        raise _fail(where, "has a Whisper audio tower (skip_audio_tower false), which the native model does not")

    ids = _token_ids(source, (AUDIO_OUT_TOKEN, AUDIO_OUT_BOS_TOKEN, AUDIO_DELAY_TOKEN, BOS_TOKEN, EOT_TOKEN))
    for field, token in (("audio_out_token_idx", AUDIO_OUT_TOKEN), ("audio_out_bos_token_id", AUDIO_OUT_BOS_TOKEN)):
        if config.get(field, ids[token]) != ids[token]:
            raise _fail(where, f"{field} = {config.get(field)} but tokenizer.json gives {token} the id {ids[token]}")

    absent = [field for field in _LLAMA_REQUIRED if text.get(field) is None]
    if absent:
        raise _fail(where, f"text_config lacks {', '.join(absent)}")
    # Llama's defaults where Boson's text_config leaves a field out (the native config's defaults differ).
    text = {
        "num_key_value_heads": text["num_attention_heads"],
        "head_dim": text["hidden_size"] // text["num_attention_heads"],
        "rms_norm_eps": 1e-6,
        **{key: value for key, value in text.items() if value is not None},
    }
    mapped: dict[str, Any] = {}
    log = []
    for field in (
        *_LLAMA_REQUIRED,
        "num_key_value_heads",
        "head_dim",
        "hidden_act",
        "max_position_embeddings",
        "rms_norm_eps",
        "attention_bias",
        "attention_dropout",
        "mlp_bias",
        "initializer_range",
        "pretraining_tp",
    ):
        if text.get(field) is not None:
            mapped[field] = text[field]
            log.append(f"config: text_config.{field} -> {field} = {text[field]!r}")
    rope = dict(text.get("rope_scaling") or {})
    rope.pop("type", None)
    rope.setdefault("rope_type", "default")
    rope["rope_theta"] = text.get("rope_theta", 500000.0)
    mapped["rope_parameters"] = rope
    log.append(f"config: text_config.rope_theta + rope_scaling -> rope_parameters = {rope!r}")
    for field, native, value in (
        ("audio_num_codebooks", "num_codebooks", config.get("audio_num_codebooks", 12)),
        ("audio_codebook_size", "codebook_size", config.get("audio_codebook_size", 1024) + 2),
        ("audio_stream_bos_id", "audio_stream_bos_id", config.get("audio_stream_bos_id", 1024)),
        ("audio_stream_eos_id", "audio_stream_eos_id", config.get("audio_stream_eos_id", 1025)),
        ("audio_out_token_idx", "audio_token_id", ids[AUDIO_OUT_TOKEN]),
        ("audio_out_bos_token_id", "audio_bos_token_id", ids[AUDIO_OUT_BOS_TOKEN]),
        ("pad_token_id", "pad_token_id", config.get("pad_token_id", 128001)),
    ):
        mapped[native] = value
        log.append(
            f"config: {field} -> {native} = {value!r}" + (" (+2: stream bos, eos)" if native == "codebook_size" else "")
        )
    mapped["audio_delay_token_id"] = ids[AUDIO_DELAY_TOKEN]
    mapped["bos_token_id"] = ids[BOS_TOKEN]
    mapped["eos_token_id"] = ids[EOT_TOKEN]
    mapped["tie_word_embeddings"] = False  # Boson's heads are their own tensors
    log.append(
        f"config: tokenizer.json -> audio_delay_token_id = {ids[AUDIO_DELAY_TOKEN]} ({AUDIO_DELAY_TOKEN}), "
        f"bos_token_id = {ids[BOS_TOKEN]} ({BOS_TOKEN}), eos_token_id = {ids[EOT_TOKEN]} ({EOT_TOKEN})"
    )
    try:
        native = HiggsAudioV2Config(**mapped)
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"maps to no valid HiggsAudioV2Config: {exc}") from None
    native.architectures = ["HiggsAudioV2ForConditionalGeneration"]
    dtype = config.get("torch_dtype") or text.get("torch_dtype")
    if dtype:
        native.dtype = dtype
    return native, log


# Boson key -> native key, in order; the first that matches names the rule in the log.
_LM_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (name, re.compile(pattern), replacement)
    for name, pattern, replacement in (
        ("layers.* -> model.layers.*", r"^layers\.(\d+)\.(.+)$", r"model.layers.\1.\2"),
        ("embed_tokens -> model.embed_tokens", r"^embed_tokens\.weight$", "model.embed_tokens.weight"),
        ("norm -> model.norm", r"^norm\.weight$", "model.norm.weight"),
        (
            "audio_codebook_embeddings -> model.embed_audio_tokens.embed_audio_tokens",
            r"^audio_codebook_embeddings\.weight$",
            "model.embed_audio_tokens.embed_audio_tokens.weight",
        ),
        (
            "audio_decoder_proj.audio_lm_head -> audio_lm_head",
            r"^audio_decoder_proj\.audio_lm_head\.weight$",
            "audio_lm_head.weight",
        ),
        (
            "audio_decoder_proj.text_lm_head -> text_lm_head",
            r"^audio_decoder_proj\.text_lm_head\.weight$",
            "text_lm_head.weight",
        ),
    )
)
# Boson's PartiallyFrozen modules: (frozen half, trainable half) -> the whole tensor, concatenated along dim 0.
_LM_SPLIT = {
    "embed_tokens.weight": ("embed_tokens.embedding_frozen.weight", "embed_tokens.embedding_trainable.weight"),
    "audio_decoder_proj.audio_lm_head.weight": (
        "audio_decoder_proj.audio_lm_head.linear_frozen.weight",
        "audio_decoder_proj.audio_lm_head.linear_trainable.weight",
    ),
    "audio_decoder_proj.text_lm_head.weight": (
        "audio_decoder_proj.text_lm_head.linear_frozen.weight",
        "audio_decoder_proj.text_lm_head.linear_trainable.weight",
    ),
}
_LM_DROPPED = ("rotary_emb.inv_freq", "audio_codebook_weights")  # buffers some saves carry; recomputed natively


def _rename(key: str, rules: tuple[tuple[str, re.Pattern[str], str], ...]) -> tuple[str, str] | None:
    for name, pattern, replacement in rules:
        if pattern.match(key):
            return pattern.sub(replacement, key), name
    return None


def _lm_shards(source: Path) -> list[str]:
    index = source / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            raise _fail(index, f"unreadable index: {exc}") from None
    elif (source / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        pickled = sorted(path.name for path in source.glob("*.bin"))
        raise _fail(
            source,
            "no safetensors weights (model.safetensors or its index)" + (f"; found {pickled}" if pickled else ""),
        )
    missing = [shard for shard in shards if not (source / shard).is_file()]
    if missing:
        raise _fail(source, f"missing weight shard(s) {', '.join(missing)}")
    return shards


def _expected_state(model_class: Any, config: Any, **kwargs: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor the native model's state dict holds, and its shape (built on the meta device: no memory)."""
    import torch

    with torch.device("meta"):
        model = model_class(config, **kwargs)
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def convert_lm(source: Path, destination: Path) -> list[str]:
    """Boson's LM folder -> HiggsAudioV2ForConditionalGeneration's: config.json, generation_config.json, the
    weights renamed shard by shard (same shard names), the tokenizer and other small files copied."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import GenerationConfig, HiggsAudioV2ForConditionalGeneration

    config, log = _native_lm_config(source)
    expected = _expected_state(HiggsAudioV2ForConditionalGeneration, config, use_text_head=True)
    optional = {"text_lm_head.weight"}  # not used to generate; the native loader ignores it, kept as Boson ships it
    shards = _lm_shards(source)

    # First pass: names and shapes only, so nothing is written for a checkpoint that does not map.
    shapes: dict[str, tuple[int, ...]] = {}
    where: dict[str, str] = {}
    for shard in shards:
        with safe_open(source / shard, framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shapes[key] = tuple(weights.get_slice(key).get_shape())
                where[key] = shard
    halves = {half: whole for whole, pair in _LM_SPLIT.items() for half in pair}
    for whole, (frozen, trainable) in _LM_SPLIT.items():
        if (frozen in shapes) != (trainable in shapes):
            raise _fail(source / where.get(frozen, where.get(trainable, "")), f"{whole}: one PartiallyFrozen half only")
        if frozen in shapes:
            shapes[whole] = (shapes[frozen][0] + shapes[trainable][0], *shapes[frozen][1:])
    plan: dict[str, tuple[str, str]] = {}  # source key (whole) -> (native key, rule)
    for key, shape in shapes.items():
        if key in halves or key.endswith(_LM_DROPPED):
            continue
        renamed = _rename(key, _LM_RULES)
        if renamed is None or renamed[0] not in expected:
            raise _fail(source / where.get(key, halves.get(key, "")), f"key {key!r} has no place in the native model")
        if expected[renamed[0]] != shape:
            raise _fail(
                source / where.get(key, ""),
                f"key {key!r} has shape {shape}, the native {renamed[0]} {expected[renamed[0]]}",
            )
        plan[key] = renamed
    missing = set(expected) - optional - {native for native, _ in plan.values()}
    if missing:
        raise _fail(source, f"missing weights for {_listed(missing)}")

    # Second pass: rename, shard by shard; a split tensor is written where its second half is read.
    destination.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    pending: dict[str, Any] = {}
    weight_map: dict[str, str] = {}
    total = 0
    for shard in shards:
        tensors = {}
        with safe_open(source / shard, framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118
                if key.endswith(_LM_DROPPED):
                    counts["dropped (recomputed natively): " + next(s for s in _LM_DROPPED if key.endswith(s))] += 1
                    continue
                tensor = weights.get_tensor(key)
                if key in halves:
                    whole = halves[key]
                    pending[key] = tensor
                    frozen, trainable = _LM_SPLIT[whole]
                    if frozen not in pending or trainable not in pending:
                        continue
                    tensor = torch.cat([pending.pop(frozen), pending.pop(trainable)], dim=0)
                    counts[f"PartiallyFrozen halves merged: {whole}"] += 1
                    key = whole
                native, rule = plan[key]
                tensors[native] = tensor.contiguous()
                counts[rule] += 1
        save_file(tensors, destination / shard, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(tensors, shard)
        total += sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (destination / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    log += [f"weights: {count} x {rule}" for rule, count in sorted(counts.items())]
    log.append(f"weights: {len(weight_map)} tensors, {total} bytes in {len(shards)} file(s): {', '.join(shards)}")

    config.save_pretrained(destination)
    generation = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    # Boson's serving engine's defaults for repetition-aware sampling (as transformers' converter sets them).
    generation.ras_win_len, generation.ras_win_max_num_repeat = 7, 2
    generation.save_pretrained(destination)
    log.append("generation_config.json: bos/eos/pad from the config, ras_win_len 7, ras_win_max_num_repeat 2")
    copied = _copy_small_files(
        source, destination, skip={"config.json", "generation_config.json", *shards, *_WEIGHT_FILES}
    )
    log.append(f"copied as they are: {', '.join(copied) or 'nothing'}")
    return log


def _copy_small_files(source: Path, destination: Path, skip: set[str]) -> list[str]:
    """The tokenizer files, licence and the like, copied unchanged (hidden files and pickled weights left out)."""
    copied = []
    for path in sorted(source.iterdir()):
        if (
            path.is_file()
            and path.name not in skip
            and not path.name.startswith(".")
            and path.suffix not in (".bin", ".pth", ".pt")
        ):
            shutil.copyfile(path, destination / path.name)
            copied.append(path.name)
    return copied


# ---------------------------------------------------------------------------------------------- the audio tokenizer

_RES_UNIT_LAYERS = ("snake1", "conv1", "snake2", "conv2")


def _tokenizer_rules(stages: int) -> tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str] | str], ...]:
    """Boson's HiggsAudioTokenizer key -> the native key, for an acoustic model of `stages` down/up-sampling stages
    (DAC's Sequential indices: stem conv, one block per stage, final snake and conv)."""
    last_snake, last_conv = stages + 1, stages + 2

    def encoder_unit(match: re.Match[str]) -> str:
        stage, unit, layer, rest = int(match[1]), int(match[2]), int(match[3]), match[4]
        return f"acoustic_encoder.block.{stage - 1}.res_unit{unit + 1}.{_RES_UNIT_LAYERS[layer]}.{rest}"

    def decoder_unit(match: re.Match[str]) -> str:
        stage, unit, layer, rest = int(match[1]), int(match[2]), int(match[3]), match[4]
        return f"acoustic_decoder.block.{stage - 1}.res_unit{unit - 1}.{_RES_UNIT_LAYERS[layer]}.{rest}"

    rules: list[tuple[str, str, Callable[[re.Match[str]], str] | str]] = [
        ("acoustic encoder stem conv", r"^encoder\.block\.0\.(weight|bias)$", r"acoustic_encoder.conv1.\1"),
        (
            "acoustic encoder residual units",
            r"^encoder\.block\.(\d+)\.block\.([0-2])\.block\.([0-3])\.(.+)$",
            encoder_unit,
        ),
        (
            "acoustic encoder stage snake",
            r"^encoder\.block\.(\d+)\.block\.3\.alpha$",
            lambda m: f"acoustic_encoder.block.{int(m[1]) - 1}.snake1.alpha",
        ),
        (
            "acoustic encoder stage conv",
            r"^encoder\.block\.(\d+)\.block\.4\.(weight|bias)$",
            lambda m: f"acoustic_encoder.block.{int(m[1]) - 1}.conv1.{m[2]}",
        ),
        ("acoustic encoder final snake", rf"^encoder\.block\.{last_snake}\.alpha$", "acoustic_encoder.snake1.alpha"),
        ("acoustic encoder final conv", rf"^encoder\.block\.{last_conv}\.(weight|bias)$", r"acoustic_encoder.conv2.\1"),
        ("acoustic decoder stem conv", r"^decoder_2\.model\.0\.(weight|bias)$", r"acoustic_decoder.conv1.\1"),
        (
            "acoustic decoder stage snake",
            r"^decoder_2\.model\.(\d+)\.block\.0\.alpha$",
            lambda m: f"acoustic_decoder.block.{int(m[1]) - 1}.snake1.alpha",
        ),
        (
            "acoustic decoder stage transposed conv",
            r"^decoder_2\.model\.(\d+)\.block\.1\.(weight|bias)$",
            lambda m: f"acoustic_decoder.block.{int(m[1]) - 1}.conv_t1.{m[2]}",
        ),
        (
            "acoustic decoder residual units",
            r"^decoder_2\.model\.(\d+)\.block\.([2-4])\.block\.([0-3])\.(.+)$",
            decoder_unit,
        ),
        ("acoustic decoder final snake", rf"^decoder_2\.model\.{last_snake}\.alpha$", "acoustic_decoder.snake1.alpha"),
        (
            "acoustic decoder final conv",
            rf"^decoder_2\.model\.{last_conv}\.(weight|bias)$",
            r"acoustic_decoder.conv2.\1",
        ),
        (
            "quantizer codebooks",
            r"^quantizer\.vq\.layers\.(\d+)\._codebook\.(.+)$",
            r"quantizer.quantizers.\1.codebook.\2",
        ),
        (
            "quantizer projections",
            r"^quantizer\.vq\.layers\.(\d+)\.(project_in|project_out)\.(.+)$",
            r"quantizer.quantizers.\1.\2.\3",
        ),
        ("fc_prior -> fc", r"^fc_prior\.(weight|bias)$", r"fc.\1"),
        ("fc_post1 -> fc1", r"^fc_post1\.(weight|bias)$", r"fc1.\1"),
        ("fc_post2 -> fc2", r"^fc_post2\.(weight|bias)$", r"fc2.\1"),
        (
            "semantic encoder/decoder (conv wrappers unwrapped)",
            r"^((?:en|de)coder_semantic\..*\.|(?:en|de)coder_semantic\.)(conv|conv1|conv2)\.conv\.(weight|bias)$",
            r"\1\2.\3",
        ),
        ("semantic encoder/decoder (plain convs)", r"^((?:en|de)coder_semantic\..*\.conv2\.(?:weight|bias))$", r"\1"),
        ("HuBERT teacher", r"^(semantic_model\..+)$", r"\1"),
    ]
    return tuple((name, re.compile(pattern), replacement) for name, pattern, replacement in rules)


def _apply(key: str, rules: tuple[tuple[str, re.Pattern[str], Any], ...]) -> tuple[str, str] | None:
    for name, pattern, replacement in rules:
        match = pattern.match(key)
        if match:
            return (replacement(match) if callable(replacement) else match.expand(replacement)), name
    return None


def _semantic_config(state: dict[str, Any], teacher: str, where: Path) -> tuple[Any, list[str]]:
    """The HuBERT teacher's HubertConfig, read off its weights (Boson's tokenizer loads it from the hub,
    bosonai/hubert_base, and saves its weights in model.pth; its config is not in the tokenizer's folder)."""
    from transformers import HubertConfig

    if teacher not in ("hubert_base_general", "hubert_base"):
        raise _fail(
            where, f"semantic_techer {teacher!r}: only the HuBERT teachers convert (hubert_base_general, hubert_base)"
        )
    prefix = "semantic_model."
    convs = sorted(
        (int(match[1]), tuple(tensor.shape))
        for key, tensor in state.items()
        if (match := re.match(rf"^{re.escape(prefix)}feature_extractor\.conv_layers\.(\d+)\.conv\.weight$", key))
    )
    projection = state.get(prefix + "feature_projection.projection.weight")
    layers = {int(m[1]) for key in state if (m := re.match(rf"^{re.escape(prefix)}encoder\.layers\.(\d+)\.", key))}
    intermediate = state.get(prefix + "encoder.layers.0.feed_forward.intermediate_dense.weight")
    positional = next(
        (
            state[prefix + "encoder.pos_conv_embed.conv." + name]
            for name in ("weight_v", "parametrizations.weight.original1", "weight")
            if prefix + "encoder.pos_conv_embed.conv." + name in state
        ),
        None,
    )
    if len(convs) != 7 or projection is None or not layers or intermediate is None or positional is None:
        raise _fail(
            where, "model.pth holds no HuBERT-base teacher (semantic_model.*: 7 feature convs, projection, layers)"
        )
    if (
        f"{prefix}feature_extractor.conv_layers.1.layer_norm.weight" in state
        or f"{prefix}encoder.layers.0.final_layer_norm.weight" not in state
    ):
        raise _fail(where, "the HuBERT teacher is not base-shaped (group-norm feature extractor, post-norm layers)")
    hidden = projection.shape[0]
    config = HubertConfig(
        hidden_size=hidden,
        num_hidden_layers=max(layers) + 1,
        num_attention_heads=12,
        intermediate_size=intermediate.shape[0],
        conv_dim=[shape[0] for _, shape in convs],
        conv_kernel=[shape[2] for _, shape in convs],
        conv_stride=[5, 2, 2, 2, 2, 2, 2],
        conv_bias=f"{prefix}feature_extractor.conv_layers.0.conv.bias" in state,
        num_conv_pos_embeddings=positional.shape[2],
        num_conv_pos_embedding_groups=hidden // positional.shape[1],
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        # HuBERT holds its masking embedding only when masking is on (training; inference never masks).
        mask_time_prob=0.05 if f"{prefix}masked_spec_embed" in state else 0.0,
    )
    log = [
        f"config: HuBERT teacher ({teacher}) read off model.pth: hidden_size {hidden}, "
        f"{config.num_hidden_layers} layers, "
        f"intermediate_size {config.intermediate_size}, conv_dim {config.conv_dim}, conv_kernel {config.conv_kernel}, "
        f"{config.num_conv_pos_embeddings}-wide positional conv in {config.num_conv_pos_embedding_groups} groups",
        "config: HuBERT base's attention heads (12) and conv strides ([5, 2, 2, 2, 2, 2, 2]) assumed: the weights do "
        "not carry them",
    ]
    return config, log


def _native_tokenizer_config(config: dict[str, Any], state: dict[str, Any], where: Path) -> tuple[Any, list[str]]:
    from transformers import DacConfig, HiggsAudioV2TokenizerConfig

    unknown = set(config) - _TOKENIZER_ARGUMENTS
    if unknown:
        raise _fail(where, f"unknown HiggsAudioTokenizer argument(s) {_listed(unknown)}")
    for field, default, allowed in (
        ("merge_mode", "concat", ("concat",)),
        ("downsample_mode", "step_down", ("step_down",)),
        ("semantic_mode", "classic", ("classic",)),
        ("vq_scale", 1, (1,)),
    ):
        if config.get(field, default) not in allowed:
            raise _fail(where, f"{field} = {config[field]!r}: the native tokenizer implements {allowed[0]!r} only")
    bins, n_q, codebook_dim = config.get("bins", 1024), config.get("n_q", 8), config.get("codebook_dim")
    if not isinstance(bins, int):
        raise _fail(where, f"bins = {bins!r}: a finite-scalar quantizer (RFSQ), which the native tokenizer lacks")
    if not isinstance(codebook_dim, int):
        raise _fail(where, "codebook_dim is not set: the native quantizer always projects to a codebook dimension")
    ratios = list(config.get("ratios", [8, 5, 4, 2]))
    sample_rate = config.get("sample_rate", 16000)
    stem = state.get("encoder.block.0.weight_v", state.get("encoder.block.0.weight"))
    head = state.get("decoder_2.model.0.weight_v", state.get("decoder_2.model.0.weight"))
    if stem is None or head is None:
        raise _fail(where, "model.pth holds no DAC acoustic encoder/decoder (encoder.block.0, decoder_2.model.0)")
    semantic, log = _semantic_config(state, config.get("semantic_techer", "hubert_base_general"), where)
    acoustic = DacConfig(
        encoder_hidden_size=stem.shape[0],  # Boson's code fixes 64 (n_filters is not used)
        downsampling_ratios=ratios,
        decoder_hidden_size=head.shape[0],  # Boson's code fixes 1024
        upsampling_ratios=ratios,
        hidden_size=config.get("D", 128),
        sampling_rate=sample_rate,
    )
    # The native tokenizer derives its number of quantizers from the highest bandwidth; Boson's caps any
    # bandwidth at n_q quantizers. Bandwidths above n_q's are dropped and n_q's is the highest.
    frame_rate = -(-sample_rate // int(acoustic.hop_length))
    nbits = (bins - 1).bit_length()
    ceiling = n_q * frame_rate * nbits / 1000
    bandwidths = [bw for bw in config.get("target_bandwidths", [1, 1.5, 2, 4, 6]) if bw < ceiling] + [
        int(ceiling) if float(ceiling).is_integer() else ceiling
    ]
    native = HiggsAudioV2TokenizerConfig(
        target_bandwidths=bandwidths,
        sample_rate=sample_rate,
        codebook_size=bins,
        codebook_dim=codebook_dim,
        semantic_sample_rate=config.get("semantic_sample_rate") or 16000,
        downsample_factor=320,
        kernel_size=3,
        channel_ratios=[1, 1],
        strides=[1, 1],
        block_dilations=[1, 1],
        unit_kernel_size=3,
        acoustic_model_config=acoustic,
        semantic_model_config=semantic,
    )
    if native.num_quantizers != n_q:
        raise _fail(
            where,
            f"n_q = {n_q} does not map to a bandwidth list (the native tokenizer would use {native.num_quantizers})",
        )
    native.architectures = ["HiggsAudioV2TokenizerModel"]
    log = [
        f"config: D -> acoustic_model_config.hidden_size = {acoustic.hidden_size}",
        f"config: ratios -> acoustic_model_config.downsampling_ratios = upsampling_ratios = {ratios} "
        f"(hop {acoustic.hop_length})",
        f"config: acoustic widths read off model.pth: encoder_hidden_size {acoustic.encoder_hidden_size}, "
        f"decoder_hidden_size {acoustic.decoder_hidden_size} "
        f"(n_filters = {config.get('n_filters')!r} is unused by Boson's code)",
        f"config: sample_rate -> sample_rate = {sample_rate}; bins -> codebook_size = {bins}; "
        f"codebook_dim = {codebook_dim}",
        f"config: n_q = {n_q}, target_bandwidths {config.get('target_bandwidths')} -> {bandwidths} "
        f"({n_q} quantizers at {frame_rate} frames/s x {nbits} bits = {ceiling} kbps)",
        f"config: semantic_sample_rate = {native.semantic_sample_rate}",
        *log,
    ]
    return native, log


def _weight_norm_pairs(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """Weight-normed tensors gathered as (g, v) under their module's `weight` key; the rest as they are."""
    plain, normed = {}, {}
    for key, tensor in state.items():
        for g_name, v_name in (
            ("weight_g", "weight_v"),
            ("parametrizations.weight.original0", "parametrizations.weight.original1"),
        ):
            if key.endswith("." + g_name) or key.endswith("." + v_name):
                base = key[: -len(g_name if key.endswith(g_name) else v_name)]
                g, v = state.get(base + g_name), state.get(base + v_name)
                if g is None or v is None:
                    raise ValueError(f"key {key!r}: half of a weight-norm pair")
                normed[base + "weight"] = (g, v)
                break
        else:
            plain[key] = tensor
    return plain, normed


def convert_audio_tokenizer(source: Path, destination: Path) -> list[str]:
    """Boson's tokenizer folder (config.json + model.pth) -> HiggsAudioV2TokenizerModel's (config.json,
    model.safetensors) and DacFeatureExtractor's preprocessor_config.json."""
    import torch
    from safetensors.torch import save_file
    from transformers import DacFeatureExtractor, HiggsAudioV2TokenizerModel

    config = _config(source)
    if config is None or not is_boson_audio_tokenizer(source):
        raise _fail(source / "config.json", "not a Boson HiggsAudioTokenizer config (n_q, ratios, sample_rate)")
    weights = source / "model.pth"
    if not weights.is_file():
        raise _fail(weights, "missing: Boson's tokenizer weights")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickler refusal names what the file holds beyond tensors
        raise _fail(weights, f"not a plain state dict of tensors ({type(exc).__name__}: {exc})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(tensor, torch.Tensor) for tensor in state.values()):
        raise _fail(weights, "not a state dict of tensors")
    native, log = _native_tokenizer_config(config, state, source / "config.json")
    expected = _expected_state(HiggsAudioV2TokenizerModel, native)
    rules = _tokenizer_rules(len(native.acoustic_model_config.downsampling_ratios))
    try:
        plain, normed = _weight_norm_pairs(state)
    except ValueError as exc:
        raise _fail(weights, str(exc)) from None

    tensors: dict[str, Any] = {}
    counts: Counter[str] = Counter()
    unplaced = []
    for key, tensor in plain.items():
        renamed = _apply(key, rules)
        if renamed is None or renamed[0] not in expected:
            unplaced.append(key)
            continue
        tensors[renamed[0]] = tensor
        counts[renamed[1]] += 1
    for key, (g, v) in normed.items():
        renamed = _apply(key, rules)
        native_key = renamed[0] if renamed else None
        parametrized = native_key and native_key.removesuffix("weight") + "parametrizations.weight.original0"
        if native_key in expected:  # a plain conv natively: the weight-normed product, as weight_norm computes it
            tensors[native_key] = torch._weight_norm(v, g, 0)
            counts[renamed[1] + " (weight norm folded into the weight)"] += 1
        elif parametrized in expected:  # weight-normed natively too (HuBERT's positional conv): g and v as they are
            tensors[parametrized] = g
            tensors[parametrized.removesuffix("0") + "1"] = v
            counts[renamed[1] + " (weight norm kept: g, v)"] += 1
        else:
            unplaced.append(key.removesuffix("weight") + "weight_g/weight_v")
    if unplaced:
        raise _fail(weights, f"key(s) with no place in the native tokenizer: {_listed(unplaced)}")
    wrong = [
        f"{key} {tuple(tensor.shape)} vs {expected[key]}"
        for key, tensor in tensors.items()
        if tuple(tensor.shape) != expected[key]
    ]
    if wrong:
        raise _fail(weights, f"shape(s) differ from the native tokenizer's: {_listed(wrong)}")
    missing = set(expected) - set(tensors)
    if missing:
        raise _fail(weights, f"missing weights for {_listed(missing)}")

    destination.mkdir(parents=True, exist_ok=True)
    tensors = {key: tensor.contiguous() for key, tensor in sorted(tensors.items())}
    save_file(tensors, destination / "model.safetensors", metadata={"format": "pt"})
    native.save_pretrained(destination)
    hop = int(native.acoustic_model_config.hop_length)
    DacFeatureExtractor(
        feature_size=1,
        hop_length=hop,
        padding_side="right",
        padding_value=0.0,
        return_attention_mask=True,
        sampling_rate=native.sample_rate,
    ).save_pretrained(destination)
    size = sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
    log += [f"weights: {count} x {rule}" for rule, count in sorted(counts.items())]
    log.append(f"weights: {len(state)} tensors in model.pth -> {len(tensors)} in model.safetensors ({size} bytes)")
    log.append(f"preprocessor_config.json: DacFeatureExtractor, {native.sample_rate} Hz, hop {hop}")
    copied = _copy_small_files(
        source, destination, skip={"config.json", "model.pth", "model.safetensors", "preprocessor_config.json"}
    )
    log.append(f"copied as they are: {', '.join(copied) or 'nothing'}")
    return log
