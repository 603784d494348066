"""Cross-check of the conversion against ACE-Step 1.5's own code, on the same tiny random weights.

ACE-Step's DiT classes (acestep/models/ of github.com/ace-step/ACE-Step-1.5, in the reference's own venv,
.cache/venv-reference-ace_step: reference_side.py says where the code comes from) build a tiny checkpoint in ACE-Step's
layout; the VAE and the Qwen3 text encoder beside it are the project's tiny ones (fixtures.py): ACE-Step loads
those folders with diffusers' AutoencoderOobleck and transformers' AutoModel/AutoTokenizer, the same classes the
pipeline uses, so any tiny pair of those classes is a valid ACE-Step checkpoint. convert.py turns the folder
into the pipeline folder; the worker's pipeline (AceStepPipeline.from_pretrained, as the adapter loads it)
generates text2music from a caption and lyrics, a fixed initial noise and 4 steps with guidance (base: APG,
through the converted null_condition_emb), and ACE-Step's `generate_audio` runs from the same noise, on the
same text and lyric hidden states (the pipeline's own: how each side words its prompt is not the conversion's
business), with its reference audio and source latents cut from the checkpoint's own silence_latent.pt.

Compared: what each side feeds the model (the silence cut from each side's copy of the silence latent), the
condition encoder's output, and the final latents. Both run float32 on CPU; they differ only in the order of
floating-point operations, if at all (diffusers' port keeps ACE-Step's operations; both call torch's SDPA):
float32 rounding (1.2e-7 relative) accumulated over a few layers and 4 steps stays near 1e-6 of the result's
scale. TOLERANCE, on the largest difference relative to the reference's largest magnitude, leaves an order of
magnitude above that; a misplaced tensor moves the result by tenths of its scale (measured: the key and value
projections swapped, 0.34; see NOTES.md). Measured on 2026-12-06: 0.0, the outputs identical.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

import pytest
import torch

from handlers.ace_step.reference.reference_side import SOURCE, SOURCE_COMMIT, SOURCE_FILES

pytestmark = pytest.mark.reference

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
REFERENCE_PYTHON = Path(
    os.environ.get("ACE_STEP_REFERENCE_PYTHON", REPO / ".cache" / "venv-reference-ace_step" / "bin" / "python")
)
MISSING_SOURCE = 3  # reference_side.py's exit status when ACE-Step's source is not there as pinned
CAPTION = "lo-fi hip hop, warm rhodes, vinyl crackle"
LYRICS = "[verse]\nsoft rain on the window\nslow beats in the night\n[chorus]\nla la la"
SECONDS = 2.0  # 50 latent frames: longer than the tiny model's sliding window (4), a multiple of its patch (2)
STEPS = 4
GUIDANCE = 7.0  # the base variant's default: the guided path and the null condition embedding run
TOLERANCE = 1e-5  # relative to the largest magnitude of the reference's output


def _fetch_source() -> None:
    """ACE-Step's pinned files, from GitHub's archive of the pinned commit, when they are not there yet (the
    reference side checks each file's SHA-256 before importing any)."""
    missing = [name for name in SOURCE_FILES if not (SOURCE / name).is_file()]
    if not missing:
        return
    url = f"https://codeload.github.com/ace-step/ACE-Step-1.5/tar.gz/{SOURCE_COMMIT}"
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            packed = response.read()
    except OSError as exc:
        pytest.skip(f"ACE-Step's source is not at {SOURCE} and {url} is out of reach ({exc}): put a checkout there")
    prefix = f"ACE-Step-1.5-{SOURCE_COMMIT}/"
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as archive:
        for name in missing:
            member = archive.extractfile(prefix + name)
            assert member is not None, f"{url} has no {name}"
            (SOURCE / name).parent.mkdir(parents=True, exist_ok=True)
            (SOURCE / name).write_bytes(member.read())


def _reference(*arguments: object) -> None:
    if not REFERENCE_PYTHON.is_file():
        pytest.skip(f"no reference venv at {REFERENCE_PYTHON}: make test-reference builds it")
    _fetch_source()
    command = [str(REFERENCE_PYTHON), str(HERE / "reference_side.py"), *map(str, arguments)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    if done.returncode == MISSING_SOURCE:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny checkpoint in ACE-Step's layout: the DiT by ACE-Step's classes, the VAE and text encoder tiny ones."""
    from handlers.ace_step.fixtures import build_ace_step

    root = tmp_path_factory.mktemp("reference")
    folder = root / "checkpoints"
    _reference("build", folder / "acestep-v15-base")
    build_ace_step(root / "tiny", "tiny")
    shutil.copytree(root / "tiny" / "vae", folder / "vae")
    shutil.copytree(root / "tiny" / "text_encoder", folder / "Qwen3-Embedding-0.6B")
    for path in (root / "tiny" / "tokenizer").iterdir():
        shutil.copyfile(path, folder / "Qwen3-Embedding-0.6B" / path.name)
    return folder


def _worker_pipeline_run(model_dir: Path, noise: torch.Tensor) -> dict[str, torch.Tensor]:
    """The worker's pipeline on the converted folder: its final latents and what its condition encoder saw."""
    from diffusers import AceStepPipeline

    pipe = AceStepPipeline.from_pretrained(model_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    seen: dict[str, torch.Tensor] = {}

    def encoder_seen(_module, _args, kwargs, output) -> None:
        if "encoder_hidden_states" not in seen:
            seen.update({name: value.detach().clone() for name, value in kwargs.items()})
            seen["encoder_hidden_states"] = output[0].detach().clone()

    def transformer_seen(_module, _args, kwargs) -> None:
        seen.setdefault("context_latents", kwargs["context_latents"][:1].detach().clone())

    hooks = [
        pipe.condition_encoder.register_forward_hook(encoder_seen, with_kwargs=True),
        pipe.transformer.register_forward_pre_hook(transformer_seen, with_kwargs=True),
    ]
    try:
        with torch.inference_mode():
            (latents,) = pipe(
                prompt=CAPTION,
                lyrics=LYRICS,
                audio_duration=SECONDS,
                num_inference_steps=STEPS,
                guidance_scale=GUIDANCE,
                task_type="text2music",
                latents=noise.clone(),
                output_type="latent",
                return_dict=False,
            )
    finally:
        for hook in hooks:
            hook.remove()
    return {"latents": latents, **seen}


def test_the_converted_checkpoint_generates_what_acestep_generates(checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    from handlers.ace_step.convert import convert

    log = convert(checkpoint, tmp_path / "converted")
    assert any(line.startswith("acestep-v15-base/model.safetensors: ") for line in log), log
    noise = torch.randn(1, round(SECONDS * 25), 64, generator=torch.Generator().manual_seed(7))
    ours = _worker_pipeline_run(tmp_path / "converted", noise)
    inputs = {
        "noise": noise,
        **{name: ours[name].float() for name in ("text_hidden_states", "lyric_hidden_states")},
        **{name: ours[name].long() for name in ("text_attention_mask", "lyric_attention_mask")},
    }
    save_file({name: value.contiguous() for name, value in inputs.items()}, tmp_path / "inputs.safetensors")
    _reference(
        "generate",
        checkpoint / "acestep-v15-base",
        tmp_path / "inputs.safetensors",
        tmp_path / "reference.safetensors",
        "--steps",
        STEPS,
        "--guidance",
        GUIDANCE,
        "--shift",
        3.0,
    )
    theirs = load_file(tmp_path / "reference.safetensors")
    # The same inputs: the silence each side cut from its own copy of the silence latent (a transpose left out
    # in the conversion shows here), the source latents and chunk masks the context is made of.
    assert torch.equal(
        ours["refer_audio_acoustic_hidden_states_packed"], theirs["fed.refer_audio_acoustic_hidden_states_packed"]
    )
    assert torch.equal(ours["context_latents"], theirs["context_latents"])
    differences = {
        name: ((ours[name] - theirs[name]).abs().max() / theirs[name].abs().max()).item()
        for name in ("encoder_hidden_states", "latents")
    }
    print(f"largest differences, relative to the reference's scale: {differences}")
    assert theirs["latents"].abs().max() > 0.1  # a result, not a collapse to zero
    assert all(difference < TOLERANCE for difference in differences.values()), differences
