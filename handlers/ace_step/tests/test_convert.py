"""ACE-Step's own layout: recognised (and the diffusers layout not), converted into the pipeline folder the worker
starts on and generates from, refused at start-up unconverted, and refused by the converter when it holds a key
or a file the converter does not understand.

The tiny folders in ACE-Step's layout are written by inverting convert.py's key mapping from the tiny diffusers
pipeline (fixtures.build_authors_layout), so a round trip here proves the converter consistent with itself and
with diffusers' classes; that the mapping is ACE-Step's is proved against ACE-Step's own code in the reference
tier (handlers/ace_step/reference/).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from handlers.ace_step.adapter import AceStep
from handlers.ace_step.catalog import CATALOG, MAIN_REPOSITORY, pieces
from handlers.ace_step.convert import convert, map_dit_key, recognise
from handlers.ace_step.fixtures import build_ace_step, build_authors_layout
from scripts.populate_volume import files_to_fetch, from_folder, main
from shared.errors import ModelFilesError
from shared.pipeline import Worker
from shared.published import write_hub_cache
from shared.settings import Settings
from shared.volume import HUB_CACHE, RepoPiece

JOB = {"id": "c", "input": {"caption": "x", "audio_duration": 1.0, "steps": 2, "seed": 3}}


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    """A tiny diffusers pipeline (base), the one the authors' folder below is written from."""
    folder = tmp_path_factory.mktemp("original") / "pipeline"
    build_ace_step(folder, "tiny")
    return folder


@pytest.fixture(scope="module")
def authors(original, tmp_path_factory) -> Path:
    """A tiny base checkpoint in ACE-Step's layout (never changed by a test: copy it first)."""
    folder = tmp_path_factory.mktemp("authors") / "checkpoints"
    build_authors_layout(folder, built=original)
    return folder


@pytest.fixture(scope="module")
def converted(authors, tmp_path_factory) -> tuple[Path, list[str]]:
    target = tmp_path_factory.mktemp("converted") / "pipeline"
    return target, convert(authors, target)


def _copy(authors: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(authors, tmp_path / "checkpoints"))


@pytest.mark.tiny
def test_the_diffusers_layout_and_partial_folders_are_not_recognised(tmp_path):
    build_ace_step(tmp_path / "diffusers", "tiny")
    assert not recognise(tmp_path / "diffusers")
    (tmp_path / "half" / "vae").mkdir(parents=True)
    (tmp_path / "half" / "vae" / "config.json").write_text("{}")
    assert not recognise(tmp_path / "half")
    assert not recognise(tmp_path / "missing")


@pytest.mark.tiny
def test_acestep_layout_is_recognised(authors):
    assert recognise(authors)
    assert CATALOG.formats[0].recognise(authors)


@pytest.mark.tiny
def test_the_converted_folder_holds_the_same_weights_as_the_pipeline_it_came_from(converted, original):
    folder, log = converted
    for component in ("transformer", "condition_encoder", "audio_tokenizer", "audio_token_detokenizer"):
        mine = load_file(folder / component / "diffusion_pytorch_model.safetensors")
        theirs = load_file(original / component / "diffusion_pytorch_model.safetensors")
        assert mine.keys() == theirs.keys(), component
        for key in mine:
            if key != "silence_latent":
                assert torch.equal(mine[key], theirs[key]), f"{component}/{key}"
    silence = load_file(folder / "condition_encoder" / "diffusion_pytorch_model.safetensors")["silence_latent"]
    assert silence.shape == (1, 15000, 64)  # [1, 64, frames] as published, transposed as the pipeline reads it
    assert torch.equal(silence[0, :, 0], torch.linspace(-1.0, 1.0, 64 * 15000).reshape(1, 15000, 64)[0, :, 0])
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "AceStepPipeline" and index["tokenizer"] == ["transformers", "TokenizersBackend"]
    assert json.loads((folder / "text_encoder" / "config.json").read_text())["architectures"] == ["Qwen3Model"]
    assert "DiT folder acestep-v15-base/" in log[0]
    assert any("decoder.* -> transformer" in line for line in log)


@pytest.mark.tiny
def test_the_worker_starts_on_the_converted_folder_and_generates(converted, tmp_path):
    folder, _ = converted
    volume = tmp_path / "volume"
    shutil.copytree(folder, volume / "ace_step" / "org" / "converted")
    result = Worker(AceStep, Settings(volume_root=volume, model_id="org/converted", output_dir=tmp_path)).run(JOB)
    assert "error" not in result, result
    assert result["details"]["checkpoint"] == {"variant": "base", "xl": False}
    assert [(o["duration_seconds"], o["channels"], o["sample_rate"]) for o in result["outputs"]] == [(1.0, 2, 48000)]


@pytest.mark.tiny
def test_an_unconverted_folder_is_refused_at_start_up_with_the_command(authors, tmp_path):
    volume = tmp_path / "volume"
    shutil.copytree(authors, volume / "ace_step" / "ACE-Step" / "acestep-v15-base")
    worker = Worker(AceStep, Settings(volume_root=volume, model_id="ACE-Step/acestep-v15-base", output_dir=tmp_path))
    with pytest.raises(ModelFilesError, match="holds ACE-Step's own layout .*which this worker does not load") as err:
        worker.start()
    assert "python scripts/populate_volume.py ace_step" in str(err.value)


@pytest.mark.parametrize(
    ("variant", "xl", "expected"),
    [("turbo", False, {"variant": "turbo", "xl": False}), ("sft", True, {"variant": "sft", "xl": True})],
)
@pytest.mark.tiny
def test_other_variants_convert_and_serve_from_a_local_folder(tmp_path, variant, xl, expected):
    source = tmp_path / "checkpoints"
    build_authors_layout(source, variant=variant, xl=xl)
    volume = tmp_path / "volume"
    folder = from_folder("ace_step", source, f"ACE-Step/{variant}", volume)
    assert (folder / "conversion.log").is_file() and source.is_dir()
    worker = Worker(AceStep, Settings(volume_root=volume, model_id=f"ACE-Step/{variant}", output_dir=tmp_path))
    result = worker.run(JOB)
    assert "error" not in result, result
    assert result["details"]["checkpoint"] == expected


@pytest.mark.tiny
def test_an_unknown_key_is_a_clear_error_and_nothing_is_written(authors, tmp_path):
    source = _copy(authors, tmp_path)
    weights = source / "acestep-v15-base" / "model.safetensors"
    tensors = load_file(weights)
    save_file({**tensors, "decoder.layers.0.extra_gate.weight": torch.zeros(2)}, weights)
    with pytest.raises(ValueError, match=r"model\.safetensors: key 'decoder\.layers\.0\.extra_gate\.weight'"):
        convert(source, tmp_path / "out")
    save_file({**tensors, "lm_head.weight": torch.zeros(2)}, weights)
    with pytest.raises(ValueError, match=r"key 'lm_head\.weight' belongs to no part of ACE-Step 1\.5's DiT"):
        convert(source, tmp_path / "out2")
    assert not any((tmp_path / "out2").iterdir())


@pytest.mark.tiny
def test_a_missing_key_or_a_wrong_shape_is_a_clear_error(authors, tmp_path):
    source = _copy(authors, tmp_path)
    weights = source / "acestep-v15-base" / "model.safetensors"
    tensors = load_file(weights)
    save_file({key: value for key, value in tensors.items() if key != "null_condition_emb"}, weights)
    with pytest.raises(ValueError, match=r"condition_encoder key 'null_condition_emb' .*is missing"):
        convert(source, tmp_path / "out")
    key = "decoder.layers.0.self_attn.q_proj.weight"
    save_file({**tensors, key: torch.zeros(3, 3)}, weights)
    with pytest.raises(
        ValueError,
        match=r"model\.safetensors: key 'decoder\.layers\.0\.self_attn\.q_proj\.weight' "
        r"\(as transformer 'layers\.0\.self_attn\.to_q\.weight'\) has shape \[3, 3\]",
    ):
        convert(source, tmp_path / "out2")


@pytest.mark.tiny
def test_an_unknown_file_or_several_dits_are_refused(authors, tmp_path):
    source = _copy(authors, tmp_path)
    (source / "acestep-v15-base" / "extra.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"extra\.bin: a file this converter does not understand"):
        convert(source, tmp_path / "out")
    (source / "acestep-v15-base" / "extra.bin").unlink()
    shutil.copytree(source / "acestep-v15-base", source / "acestep-v15-sft")
    with pytest.raises(ValueError, match=r"several DiT folders \(acestep-v15-base, acestep-v15-sft\)"):
        convert(source, tmp_path / "out2")


@pytest.mark.tiny
def test_the_language_model_and_docs_beside_it_are_left_out(authors, tmp_path):
    source = _copy(authors, tmp_path)
    (source / "acestep-5Hz-lm-1.7B").mkdir()
    (source / "acestep-5Hz-lm-1.7B" / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    (source / "README.md").write_text("model card")
    log = convert(source, tmp_path / "out")
    assert "not converted: acestep-5Hz-lm-1.7B/ (ACE-Step's 5 Hz language model; the worker runs without it)" in log
    assert not (tmp_path / "out" / "acestep-5Hz-lm-1.7B").exists()


@pytest.mark.unit
def test_keys_map_onto_the_pipeline_components():
    assert map_dit_key("decoder.layers.3.cross_attn.o_proj.weight") == (
        "transformer",
        "layers.3.cross_attn.to_out.0.weight",
    )
    assert map_dit_key("decoder.proj_in.1.bias") == ("transformer", "proj_in_conv.bias")
    assert map_dit_key("encoder.lyric_encoder.layers.0.self_attn.k_norm.weight") == (
        "condition_encoder",
        "lyric_encoder.layers.0.self_attn.norm_k.weight",
    )
    assert map_dit_key("null_condition_emb") == ("condition_encoder", "null_condition_emb")
    assert map_dit_key("detokenizer.proj_out.weight") == ("audio_token_detokenizer", "proj_out.weight")
    with pytest.raises(ValueError, match="belongs to no part"):
        map_dit_key("decoder")


@pytest.mark.unit
def test_the_catalog_gathers_acestep_layout_from_its_repositories_and_no_language_model():
    assert CATALOG.default_model_id == "ACE-Step/acestep-v15-base" == CATALOG.repositories[0]
    assert pieces("ACE-Step/acestep-v15-base") == (
        RepoPiece("ACE-Step/acestep-v15-base", "acestep-v15-base"),
        RepoPiece(MAIN_REPOSITORY, "", ("vae/*", "Qwen3-Embedding-0.6B/*")),
    )
    assert pieces("ACE-Step/acestep-v15-sft")[0] == RepoPiece("ACE-Step/acestep-v15-sft", "acestep-v15-sft")
    (turbo,) = pieces(MAIN_REPOSITORY)
    listed = ["README.md", "config.json", "acestep-v15-turbo/config.json", "acestep-v15-turbo/model.safetensors"]
    listed += ["acestep-v15-turbo/silence_latent.pt", "acestep-v15-turbo/modeling_acestep_v15_turbo.py"]
    listed += ["acestep-5Hz-lm-1.7B/config.json", "acestep-5Hz-lm-1.7B/model.safetensors", "vae/config.json"]
    assert files_to_fetch(listed, turbo.files) == [
        "acestep-v15-turbo/config.json",
        "acestep-v15-turbo/model.safetensors",
        "acestep-v15-turbo/silence_latent.pt",
        "vae/config.json",
    ]
    assert pieces("ACE-Step/acestep-v15-xl-turbo-diffusers") == (RepoPiece("ACE-Step/acestep-v15-xl-turbo-diffusers"),)


@pytest.mark.tiny
def test_populating_the_default_from_the_model_cache_gathers_and_converts(authors, tmp_path, capsys):
    """ACE-Step/acestep-v15-base (the DiT folder as its repository) and ACE-Step/Ace-Step1.5 (VAE, text encoder,
    the turbo and a language model beside them) as RunPod's model cache holds them: the populator takes the DiT
    from the first, vae/ and Qwen3-Embedding-0.6B/ from the second, converts, and the worker serves the result."""
    hub = tmp_path / "volume" / HUB_CACHE
    base = tmp_path / "repos" / "base"
    shutil.copytree(authors / "acestep-v15-base", base)
    (base / "README.md").write_text("card")
    main_repo = tmp_path / "repos" / "main"
    for name in ("vae", "Qwen3-Embedding-0.6B", "acestep-v15-base"):
        shutil.copytree(authors / name, main_repo / (name if name != "acestep-v15-base" else "acestep-v15-turbo"))
    (main_repo / "acestep-5Hz-lm-1.7B").mkdir()
    (main_repo / "acestep-5Hz-lm-1.7B" / "model.safetensors").write_bytes(b"not fetched")
    write_hub_cache(base, hub, "ACE-Step/acestep-v15-base")
    write_hub_cache(main_repo, hub, MAIN_REPOSITORY)
    volume = tmp_path / "volume"
    assert main(["ace_step", "--hub-cache", str(hub), "--volume", str(volume)]) == 0
    folder = volume / "ace_step" / "ACE-Step" / "acestep-v15-base"
    assert (folder / "model_index.json").is_file() and not (folder / "acestep-v15-base").exists()
    assert "decoder.* -> transformer" in (folder / "conversion.log").read_text()
    assert "acestep-5Hz-lm" not in capsys.readouterr().out
    result = Worker(AceStep, Settings(volume_root=volume, output_dir=tmp_path)).run(JOB)  # the default MODEL_ID
    assert "error" not in result, result


@pytest.mark.tiny
def test_a_vae_or_text_encoder_that_does_not_fit_is_refused_before_anything_is_written(authors, tmp_path):
    source = _copy(authors, tmp_path)
    vae = source / "vae" / "diffusion_pytorch_model.safetensors"
    save_file({**load_file(vae), "decoder.extra.weight": torch.zeros(1)}, vae)
    with pytest.raises(ValueError, match=r"vae/diffusion_pytorch_model\.safetensors: key 'decoder\.extra\.weight'"):
        convert(source, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())
    shutil.copyfile(authors / "vae" / "diffusion_pytorch_model.safetensors", vae)
    text = source / "Qwen3-Embedding-0.6B" / "model.safetensors"
    save_file({key: value for key, value in load_file(text).items() if key != "norm.weight"}, text)
    with pytest.raises(ValueError, match=r"Qwen3-Embedding-0\.6B/model\.safetensors: key 'norm\.weight' is missing"):
        convert(source, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.tiny
def test_a_dit_folder_alone_is_refused_at_start_up_and_by_the_converter(authors, tmp_path):
    """How RunPod's model cache holds ACE-Step/acestep-v15-base: the repository is the DiT folder alone."""
    volume = tmp_path / "volume"
    shutil.copytree(authors / "acestep-v15-base", volume / "ace_step" / "ACE-Step" / "acestep-v15-base")
    worker = Worker(AceStep, Settings(volume_root=volume, model_id="ACE-Step/acestep-v15-base", output_dir=tmp_path))
    with pytest.raises(ModelFilesError, match="holds ACE-Step's own layout .*convert it with: python scripts/pop"):
        worker.start()
    with pytest.raises(ValueError, match="a DiT folder alone .*populate it by --model-id, which gathers them"):
        convert(authors / "acestep-v15-base", tmp_path / "out")
