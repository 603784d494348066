"""ACE-Step 1.5 in its authors' layout, converted into the diffusers pipeline folder the worker loads.

ACE-Step publishes its 2B checkpoints in the layout its own code reads (github.com/ace-step/ACE-Step-1.5,
`acestep/model_downloader.py`: a `checkpoints/` folder):

    <DiT folder>/            e.g. acestep-v15-base: config.json (model_type "acestep"), model.safetensors (or
                             shards and their index), silence_latent.pt, and the DiT's modeling code (*.py)
    vae/                     AutoencoderOobleck (diffusers): config.json, diffusion_pytorch_model.safetensors
    Qwen3-Embedding-0.6B/    the text encoder (transformers Qwen3) and its tokenizer

The DiT file holds one model, `AceStepConditionGenerationModel`, whose parts diffusers' `AceStepPipeline` loads
as separate components:

    decoder.*            -> transformer/              AceStepTransformer1DModel
    encoder.*            -> condition_encoder/        AceStepConditionEncoder
    null_condition_emb   -> condition_encoder/        (its classifier-free-guidance embedding)
    silence_latent.pt    -> condition_encoder/        silence_latent, [1, 64, T] stored, [1, T, 64] used
    tokenizer.*          -> audio_tokenizer/          AceStepAudioTokenizer
    detokenizer.*        -> audio_token_detokenizer/  AceStepAudioTokenDetokenizer

with the attention projections renamed to diffusers' names (q_proj, k_proj, v_proj, o_proj, q_norm, k_norm ->
to_q, to_k, to_v, to_out.0, norm_q, norm_k) and the DiT's patch convolutions, which ACE-Step wraps in
`nn.Sequential(reshape, conv, reshape)`, unwrapped (proj_in.1, proj_out.1 -> proj_in_conv, proj_out_conv).
The mapping was learned from diffusers' scripts/convert_ace_step_to_diffusers.py and checked against ACE-Step's
own classes (handlers/ace_step/reference/). Unlike that script, which drops keys it does not place, every
tensor must land in a component whose diffusers class has a parameter of that name and shape, and every
parameter of those classes must be filled: anything else is a ValueError naming the file and the key.

The VAE and the text encoder are diffusers' and transformers' own classes in both layouts: their files are
copied (the text encoder's config names the class the pipeline loads, Qwen3Model), after their tensor names
are checked against those classes. Tensors keep their stored dtype.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

FORMAT_NAME = (
    "ACE-Step's own layout (a DiT folder whose config.json says model_type 'acestep', vae/, Qwen3-Embedding-0.6B/)"
)
DIT_MODEL_TYPE = "acestep"
VAE_FOLDER = "vae"
TEXT_ENCODER_FOLDER = "Qwen3-Embedding-0.6B"
SILENCE_LATENT = "silence_latent.pt"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
)
# Files a folder of this layout may hold that no loader reads: the DiT's modeling code (trust_remote_code; the
# worker runs diffusers' classes), model cards, git and download bookkeeping.
_NOT_LOADED = ("*.py", "*.md", ".gitattributes", "LICENSE", "LICENSE.*", "NOTICE")
MAX_SHARD_BYTES = 5 * 1024**3  # diffusers' default shard size

# ACE-Step module names -> diffusers' (whole dotted segments of a key).
_ATTENTION_NAMES = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "o_proj": "to_out.0"}
_ATTENTION_NAMES |= {"q_norm": "norm_q", "k_norm": "norm_k"}
_DIT_PATCH_CONVOLUTIONS = {("proj_in", "1"): "proj_in_conv", ("proj_out", "1"): "proj_out_conv"}
# Top-level prefix of the DiT file -> the pipeline component it belongs to.
COMPONENTS = {
    "decoder": "transformer",
    "encoder": "condition_encoder",
    "tokenizer": "audio_tokenizer",
    "detokenizer": "audio_token_detokenizer",
}
_TOP_LEVEL = {"null_condition_emb": ("condition_encoder", "null_condition_emb")}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return value


def _model_type(config: Path) -> str | None:
    try:
        value = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return value.get("model_type") if isinstance(value, dict) else None


def dit_folders(folder: Path) -> list[Path]:
    """The subfolders holding an ACE-Step DiT (config.json with model_type 'acestep')."""
    return sorted(
        child for child in folder.iterdir() if child.is_dir() and _model_type(child / "config.json") == DIT_MODEL_TYPE
    )


def _complete_layout(folder: Path) -> bool:
    return (
        (folder / VAE_FOLDER / "config.json").is_file()
        and (folder / TEXT_ENCODER_FOLDER / "config.json").is_file()
        and bool(dit_folders(folder))
    )


def recognise(folder: Path) -> bool:
    """Whether `folder` is in ACE-Step's layout (reads a few config files): a DiT folder beside vae/ and the
    text encoder's folder, or a DiT folder alone (how ACE-Step/acestep-v15-base and -sft are published, and so
    how RunPod's model cache holds them). The diffusers pipeline folder (model_index.json, ...) is not."""
    if not folder.is_dir() or (folder / "model_index.json").is_file():
        return False
    return _model_type(folder / "config.json") == DIT_MODEL_TYPE or _complete_layout(folder)


def _ignorable(name: str) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(PurePosixPath(name).name, pattern) for pattern in _NOT_LOADED)


def _files(folder: Path) -> list[str]:
    """Every file under `folder`, relative, hidden folders (a download tool's cache) left out."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts[:-1])
    )


def _weight_files(folder: Path, name: str) -> list[str]:
    """The safetensors files of one set of weights: `name` itself, or the shards its index lists."""
    index = folder / f"{name}.index.json"
    if (folder / name).is_file():
        return [name]
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        missing = [shard for shard in shards if not (folder / shard).is_file()]
        if not shards or missing:
            raise ValueError(f"{index}: lists shards that are not there: {', '.join(missing) or 'none listed'}")
        return shards
    raise ValueError(f"{folder}: no {name} (or {name}.index.json and its shards)")


def _check_nothing_else(folder: Path, understood: Iterable[str]) -> None:
    known = set(understood)
    for name in _files(folder):
        if name not in known and not _ignorable(name) and name != ".gitattributes":
            raise ValueError(f"{folder / name}: a file this converter does not understand; nothing was converted")


def map_dit_key(key: str) -> tuple[str, str]:
    """An ACE-Step DiT key -> (pipeline component, the component's key). ValueError for a key of no part."""
    if key in _TOP_LEVEL:
        return _TOP_LEVEL[key]
    prefix, _, rest = key.partition(".")
    if prefix not in COMPONENTS or not rest:
        raise ValueError(f"key {key!r} belongs to no part of ACE-Step 1.5's DiT ({', '.join(COMPONENTS)})")
    parts = rest.split(".")
    if prefix == "decoder" and tuple(parts[:2]) in _DIT_PATCH_CONVOLUTIONS:
        parts = [_DIT_PATCH_CONVOLUTIONS[tuple(parts[:2])], *parts[2:]]
    return COMPONENTS[prefix], ".".join(_ATTENTION_NAMES.get(part, part) for part in parts)


def component_configs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """ACE-Step's DiT config.json -> the constructor arguments of each pipeline component's diffusers class.
    XL checkpoints give their condition encoder its own width (encoder_hidden_size and friends)."""
    try:
        hidden = config["hidden_size"]
        encoder = {
            "hidden_size": config.get("encoder_hidden_size") or hidden,
            "intermediate_size": config.get("encoder_intermediate_size") or config["intermediate_size"],
            "num_attention_heads": config.get("encoder_num_attention_heads") or config["num_attention_heads"],
            "num_key_value_heads": config.get("encoder_num_key_value_heads") or config["num_key_value_heads"],
        }
        layers = config["num_hidden_layers"]
        layer_types = config.get("layer_types") or [
            "sliding_attention" if (index + 1) % 2 else "full_attention" for index in range(layers)
        ]
        if config.get("use_sliding_window", True) is False:  # ACE-Step then ignores sliding_window everywhere
            layer_types = ["full_attention"] * max(len(layer_types), layers)
        shared = {
            "head_dim": config["head_dim"],
            "rope_theta": config["rope_theta"],
            "attention_bias": config["attention_bias"],
            "attention_dropout": config["attention_dropout"],
            "rms_norm_eps": config["rms_norm_eps"],
            "sliding_window": config["sliding_window"],
        }
        transformer = {
            "hidden_size": hidden,
            "intermediate_size": config["intermediate_size"],
            "num_hidden_layers": layers,
            "num_attention_heads": config["num_attention_heads"],
            "num_key_value_heads": config["num_key_value_heads"],
            "in_channels": config["in_channels"],
            "audio_acoustic_hidden_dim": config["audio_acoustic_hidden_dim"],
            "patch_size": config["patch_size"],
            "layer_types": list(layer_types[:layers]),
            "encoder_hidden_size": encoder["hidden_size"],
            "is_turbo": bool(config.get("is_turbo", False)),
            "model_version": config.get("model_version"),
            **shared,
        }
        lyric_layers = config["num_lyric_encoder_hidden_layers"]
        timbre_layers = config["num_timbre_encoder_hidden_layers"]
        condition_encoder = {
            **encoder,
            "text_hidden_dim": config["text_hidden_dim"],
            "timbre_hidden_dim": config["timbre_hidden_dim"],
            "num_lyric_encoder_hidden_layers": lyric_layers,
            "num_timbre_encoder_hidden_layers": timbre_layers,
            "layer_types": list(layer_types[:lyric_layers]),
            **shared,
        }
        pooler_layers = config.get("num_attention_pooler_hidden_layers", 2)
        codes = {
            **encoder,
            "audio_acoustic_hidden_dim": config["audio_acoustic_hidden_dim"],
            "pool_window_size": config.get("pool_window_size", 5),
            "num_attention_pooler_hidden_layers": pooler_layers,
            "layer_types": list(layer_types[:pooler_layers]),
            **shared,
        }
        audio_tokenizer = {
            **codes,
            "fsq_dim": config.get("fsq_dim", encoder["hidden_size"]),
            "fsq_input_levels": config.get("fsq_input_levels", [8, 8, 8, 5, 5, 5]),
            "fsq_input_num_quantizers": config.get("fsq_input_num_quantizers", 1),
        }
    except KeyError as exc:
        raise ValueError(f"the DiT's config.json lacks {exc.args[0]!r}") from None
    # diffusers' timbre encoder takes no layer types: it alternates sliding and full attention from its first
    # layer, as ACE-Step's default does. A checkpoint with other timbre layer types cannot be represented.
    default = ["sliding_attention" if (index + 1) % 2 else "full_attention" for index in range(timbre_layers)]
    if list(layer_types[:timbre_layers]) != default:
        raise ValueError(
            f"the DiT's layer_types {layer_types[:timbre_layers]} for the timbre encoder differ from {default}"
        )
    return {
        "transformer": transformer,
        "condition_encoder": condition_encoder,
        "audio_tokenizer": audio_tokenizer,
        "audio_token_detokenizer": codes,
    }


def _component_classes() -> dict[str, type]:
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )

    return {
        "transformer": AceStepTransformer1DModel,
        "condition_encoder": AceStepConditionEncoder,
        "audio_tokenizer": AceStepAudioTokenizer,
        "audio_token_detokenizer": AceStepAudioTokenDetokenizer,
    }


def _on_meta(build: Any) -> Any:
    """A model built without memory for its weights: its parameter names and shapes are what is checked."""
    import torch

    with torch.device("meta"):
        return build()


def _expected_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _first_problem(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> tuple[str, str] | None:
    """The first tensor name that does not fit the worker's model, and what is wrong with it."""
    unknown = sorted(set(found) - set(expected))
    if unknown:
        return unknown[0], f"has no place in the worker's model ({len(unknown)} such keys)"
    missing = sorted(set(expected) - set(found))
    if missing:
        return missing[0], f"is missing ({len(missing)} keys missing)"
    for name in sorted(found):
        if found[name] != expected[name]:
            return name, f"has shape {list(found[name])}, the worker's model {list(expected[name])}"
    return None


def _check_against(where: Path, found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> None:
    problem = _first_problem(found, expected)
    if problem is not None:
        raise ValueError(f"{where}: key {problem[0]!r} {problem[1]}; nothing was converted")


def _save_weights(tensors: dict[str, Any], folder: Path, name: str) -> list[str]:
    """Tensors saved as safetensors under `name`, in shards of at most MAX_SHARD_BYTES with an index when
    larger (diffusers' and transformers' naming): the file names written."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Any]] = [{}]
    size = 0
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > MAX_SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], folder / name, metadata={"format": "pt"})
        return [name]
    stem, suffix = name.rsplit(".", 1)
    written, weight_map = [], {}
    for number, shard in enumerate(shards, start=1):
        shard_name = f"{stem}-{number:05d}-of-{len(shards):05d}.{suffix}"
        save_file(shard, folder / shard_name, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(shard, shard_name)
        written.append(shard_name)
    total = sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{name}.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return [*written, f"{name}.index.json"]


def _header_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes = {}
    for path in files:
        with safe_open(path, framework="pt") as opened:
            shapes |= {key: tuple(opened.get_slice(key).get_shape()) for key in opened.keys()}  # noqa: SIM118
    return shapes


def _load_silence_latent(path: Path, timbre_dim: int) -> Any:
    import torch

    if not path.is_file():
        raise ValueError(f"{path}: missing (ACE-Step's loader requires it too: the encoded silence it starts from)")
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle holding more than a tensor is refused, never run
        raise ValueError(f"{path}: not a plain tensor file ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, torch.Tensor) or value.dim() != 3 or value.shape[1] != timbre_dim:
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{path}: expected a tensor [1, {timbre_dim}, frames], found {shape}")
    return value


def _convert_dit(dit: Path, destination: Path, log: list[str]) -> None:
    from safetensors.torch import load_file

    config = _read_json(dit / "config.json")
    configs = component_configs(config)
    classes = _component_classes()
    weight_files = _weight_files(dit, "model.safetensors")
    _check_nothing_else(
        dit,
        [
            "config.json",
            SILENCE_LATENT,
            *weight_files,
            *(["model.safetensors.index.json"] if (dit / "model.safetensors.index.json").is_file() else []),
        ],
    )
    models = {name: _on_meta(lambda name=name: classes[name](**configs[name])) for name in classes}
    parts: dict[str, dict[str, Any]] = {name: {} for name in classes}
    origin: dict[str, tuple[str, str]] = {}  # component/name -> the file and key it came from, for errors
    dtypes = set()
    for file in weight_files:
        for key, tensor in load_file(dit / file).items():
            try:
                component, name = map_dit_key(key)
            except ValueError as exc:
                raise ValueError(f"{dit / file}: {exc}; nothing was converted") from None
            if name in parts[component]:
                raise ValueError(f"{dit / file}: key {key!r} maps onto {component}/{name}, already filled")
            parts[component][name] = tensor
            origin[f"{component}/{name}"] = (file, key)
            dtypes.add(str(tensor.dtype).removeprefix("torch."))
    total = sum(len(tensors) for tensors in parts.values())
    log.append(
        f"{dit.name}/{' + '.join(weight_files)}: {total} tensors ({', '.join(sorted(dtypes))}), "
        f"model_type {config.get('model_type')!r}, model_version {config.get('model_version')!r}"
    )
    # The silence the pipeline starts a song from and feeds the timbre encoder when no reference audio is given.
    timbre_dim = configs["condition_encoder"]["timbre_hidden_dim"]
    silence = _load_silence_latent(dit / SILENCE_LATENT, timbre_dim)
    dtype = parts["condition_encoder"].get("null_condition_emb", silence).dtype
    parts["condition_encoder"]["silence_latent"] = silence.transpose(1, 2).to(dtype).contiguous()
    for component, model in models.items():
        expected = _expected_shapes(model)
        if component == "condition_encoder":  # its buffer is as long as the published silence (15000 frames)
            expected["silence_latent"] = tuple(parts[component]["silence_latent"].shape)
        found = {name: tuple(tensor.shape) for name, tensor in parts[component].items()}
        problem = _first_problem(found, expected)
        if problem is not None:
            name, what = problem
            if f"{component}/{name}" in origin:
                file, key = origin[f"{component}/{name}"]
                raise ValueError(f"{dit / file}: key {key!r} (as {component} {name!r}) {what}; nothing was converted")
            raise ValueError(f"{dit}: {component} key {name!r} {what}; nothing was converted")
    for component, model in models.items():
        folder = destination / component
        model.save_config(folder)
        written = _save_weights(parts[component], folder, "diffusion_pytorch_model.safetensors")
        log.append(f"  -> {component}/{', '.join(written)}: {len(parts[component])} tensors")
    log.append(
        "  keys: decoder.* -> transformer (proj_in.1/proj_out.1 -> proj_in_conv/proj_out_conv), encoder.* and "
        "null_condition_emb -> condition_encoder, tokenizer.* -> audio_tokenizer, detokenizer.* -> "
        "audio_token_detokenizer; q_proj/k_proj/v_proj/o_proj/q_norm/k_norm -> to_q/to_k/to_v/to_out.0/norm_q/norm_k"
    )
    log.append(
        f"  {dit.name}/{SILENCE_LATENT} {list(silence.shape)} -> condition_encoder silence_latent "
        f"{list(parts['condition_encoder']['silence_latent'].shape)} ({dtype})"
    )
    fields = {name: config.get(name) for name in ("hidden_size", "num_hidden_layers", "model_version", "is_turbo")}
    log.append(f"  {dit.name}/config.json -> {', '.join(f'{name}/config.json' for name in models)} ({fields})")


def _check_vae(source: Path) -> list[str]:
    """The VAE folder's files to copy, once its tensor names fit diffusers' AutoencoderOobleck."""
    from diffusers import AutoencoderOobleck

    config = _read_json(source / "config.json")
    files = _weight_files(source, "diffusion_pytorch_model.safetensors")
    index = (
        [] if files == ["diffusion_pytorch_model.safetensors"] else ["diffusion_pytorch_model.safetensors.index.json"]
    )
    _check_nothing_else(source, ["config.json", *files, *index])
    if config.get("_class_name") != "AutoencoderOobleck":
        raise ValueError(
            f"{source / 'config.json'}: _class_name {config.get('_class_name')!r}, expected AutoencoderOobleck"
        )
    kwargs = {key: value for key, value in config.items() if not key.startswith("_")}
    model = _on_meta(lambda: AutoencoderOobleck(**kwargs))
    _check_against(source / files[0], _header_shapes([source / name for name in files]), _expected_shapes(model))
    return ["config.json", *files, *index]


def _copy_vae(source: Path, files: list[str], destination: Path, log: list[str]) -> None:
    (destination / "vae").mkdir(parents=True)
    for name in files:
        shutil.copyfile(source / name, destination / "vae" / name)
    log.append(f"{VAE_FOLDER}/ -> vae/ (copied: {', '.join(files)}; AutoencoderOobleck)")


def _check_text_encoder(source: Path) -> tuple[dict[str, Any], list[str], list[str], str]:
    """The text encoder's config, its files to copy, the tokenizer's and the tokenizer's class, once its tensor
    names fit transformers' Qwen3Model."""
    from transformers import AutoConfig, Qwen3Model

    config = _read_json(source / "config.json")
    if config.get("model_type") != "qwen3":
        raise ValueError(f"{source / 'config.json'}: model_type {config.get('model_type')!r}, expected 'qwen3'")
    files = _weight_files(source, "model.safetensors")
    index = ["model.safetensors.index.json"] if files != ["model.safetensors"] else []
    tokenizer = [name for name in TOKENIZER_FILES if (source / name).is_file()]
    extra = [name for name in ("generation_config.json",) if (source / name).is_file()]
    _check_nothing_else(source, ["config.json", *files, *index, *tokenizer, *extra])
    if "tokenizer.json" not in tokenizer or "tokenizer_config.json" not in tokenizer:
        raise ValueError(f"{source}: no tokenizer.json and tokenizer_config.json")
    tokenizer_class = _read_json(source / "tokenizer_config.json").get("tokenizer_class")
    if not tokenizer_class:
        raise ValueError(f"{source / 'tokenizer_config.json'}: names no tokenizer_class")
    model = _on_meta(lambda: Qwen3Model(AutoConfig.from_pretrained(source)))
    shapes = _header_shapes([source / name for name in files])
    if shapes and all(key.startswith("model.") for key in shapes):  # a body saved under a head: transformers
        shapes = {key.removeprefix("model."): shape for key, shape in shapes.items()}  # loads either
    _check_against(source / files[0], shapes, _expected_shapes(model))
    return config, [*files, *index, *extra], tokenizer, tokenizer_class


def _copy_text_encoder(
    source: Path, checked: tuple[dict[str, Any], list[str], list[str], str], destination: Path, log: list[str]
) -> None:
    config, files, tokenizer, tokenizer_class = checked
    text_encoder = destination / "text_encoder"
    text_encoder.mkdir(parents=True)
    # The class the pipeline loads: Qwen3Model (the published config may name a causal-LM class).
    (text_encoder / "config.json").write_text(json.dumps(config | {"architectures": ["Qwen3Model"]}, indent=2) + "\n")
    for name in files:
        shutil.copyfile(source / name, text_encoder / name)
    (destination / "tokenizer").mkdir(parents=True)
    for name in tokenizer:
        shutil.copyfile(source / name, destination / "tokenizer" / name)
    log.append(
        f"{TEXT_ENCODER_FOLDER}/ -> text_encoder/ (copied: {', '.join(files)}; config.json architectures -> "
        f"Qwen3Model) and tokenizer/ ({', '.join(tokenizer)}; {tokenizer_class})"
    )


def convert(source: Path, destination: Path) -> list[str]:
    """A folder in ACE-Step's layout -> the diffusers pipeline folder in `destination` (empty, or not yet
    there): one log line per thing mapped. A ValueError names the file and key it does not understand, raised
    before anything is written (a failure while writing, a full disk say, leaves a partial folder: the
    populator writes into a scratch folder it discards)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, __version__

    if not recognise(source):
        raise ValueError(f"{source}: not in {FORMAT_NAME}")
    if not _complete_layout(source):
        raise ValueError(
            f"{source}: a DiT folder alone (config.json model_type 'acestep'); it converts beside vae/ and "
            f"{TEXT_ENCODER_FOLDER}/ (ACE-Step/Ace-Step1.5's): populate it by --model-id, which gathers them"
        )
    dits = dit_folders(source)
    if len(dits) > 1:
        names = ", ".join(dit.name for dit in dits)
        raise ValueError(f"{source}: holds several DiT folders ({names}); convert one at a time (move the others)")
    dit = dits[0]
    destination.mkdir(parents=True, exist_ok=True)
    if any(destination.iterdir()):
        raise ValueError(f"{destination}: not empty")
    log = [f"source: {source} in {FORMAT_NAME}; DiT folder {dit.name}/"]
    # Everything else at the top level: what the worker never reads is named in the log, anything unknown refused.
    for child in sorted(source.iterdir()):
        if child.name.startswith(".") or child in (dit, source / VAE_FOLDER, source / TEXT_ENCODER_FOLDER):
            continue
        if child.is_file() and (_ignorable(child.name) or child.name == "config.json"):
            log.append(f"not converted: {child.name} (no loader of the worker reads it)")
        elif child.is_dir() and _model_type(child / "config.json") == "qwen3":
            log.append(f"not converted: {child.name}/ (ACE-Step's 5 Hz language model; the worker runs without it)")
        else:
            raise ValueError(
                f"{child}: not part of ACE-Step's layout as this converter knows it; nothing was converted"
            )
    # Every check before anything is written: the VAE and text encoder by their files' headers, the DiT's
    # tensors as they are read (in _convert_dit, before it writes).
    vae_files = _check_vae(source / VAE_FOLDER)
    text_encoder = _check_text_encoder(source / TEXT_ENCODER_FOLDER)
    _convert_dit(dit, destination, log)
    _copy_vae(source / VAE_FOLDER, vae_files, destination, log)
    _copy_text_encoder(source / TEXT_ENCODER_FOLDER, text_encoder, destination, log)
    tokenizer_class = text_encoder[3]
    # ACE-Step computes its own (shifted) sigmas in [0, 1] and hands them to the scheduler: one train timestep,
    # no shift of its own.
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    scheduler.save_config(destination / "scheduler")
    log.append("scheduler/scheduler_config.json: FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)")
    classes = _component_classes()
    index = {"_class_name": "AceStepPipeline", "_diffusers_version": __version__}
    index |= {name: ["ace_step", cls.__name__] for name, cls in classes.items() if name != "transformer"}
    index |= {
        "transformer": ["diffusers", classes["transformer"].__name__],
        "vae": ["diffusers", "AutoencoderOobleck"],
        "text_encoder": ["transformers", "Qwen3Model"],
        "tokenizer": ["transformers", tokenizer_class],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    }
    (destination / "model_index.json").write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    log.append(
        f"model_index.json: AceStepPipeline ({', '.join(name for name in sorted(index) if not name.startswith('_'))})"
    )
    return log
