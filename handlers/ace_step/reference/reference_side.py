"""The reference's side of the cross-check: ACE-Step 1.5's own DiT code builds a tiny checkpoint in ACE-Step's
layout and generates from it. Runs in the reference's own venv (.cache/venv-reference-ace_step; transformers
< 4.58, as ACE-Step pins), with ACE-Step's source on the path:

    python reference_side.py build DIT_FOLDER
    python reference_side.py generate DIT_FOLDER INPUTS.safetensors OUT.safetensors --steps N --guidance G --shift S

Where ACE-Step's code comes from: ACE-Step loads a DiT with `AutoModel.from_pretrained(<DiT folder>,
trust_remote_code=True)`, whose modeling code is published beside the weights on the hub and, as "the
authoritative source for model code" that its downloader copies into each checkpoint folder, in its GitHub
repository under acestep/models/ (acestep/model_downloader.py). `ace-step15-fork` on PyPI (20260212) packages
ACE-Step's handler but not acestep/models/, so the source is a checkout of github.com/ace-step/ACE-Step-1.5
(ACE_STEP_SOURCE, default .cache/ace-step-1.5-src) at the files pinned in SOURCE_FILES by SHA-256 (read at
commit 53067ab73ba11d32299fa55687497b570b20a4d1, 2026-04-17, upstream PR #1110). The class is imported from
there and loaded with its own from_pretrained, which is what trust_remote_code resolves to.

`build`: AceStepConditionGenerationModel (the base variant's code) with a tiny AceStepConfig, every parameter
drawn at random (fixed seed; none left at zero, so each one shows in the output), saved with save_pretrained
(config.json with model_type 'acestep', model.safetensors), and a silence_latent.pt of [1, 64, 15000] as
published.

`generate`: text2music as ACE-Step's handler runs it without its language model: the text and lyric hidden
states given (INPUTS), the reference audio and the source latents cut from the checkpoint's silence latent
(loaded and transposed as acestep/core/generation/handler/init_service_loader.py does), chunk masks of ones,
no cover; then `generate_audio` (ODE, Euler, APG guidance) from the given initial noise. OUT holds the latents
and what was fed to the model.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SOURCE = Path(os.environ.get("ACE_STEP_SOURCE", REPO / ".cache" / "ace-step-1.5-src"))
SOURCE_COMMIT = "53067ab73ba11d32299fa55687497b570b20a4d1"
SOURCE_FILES = {
    "acestep/__init__.py": "4ff1234e810a6577d9036402df388eafb0fdf92f77329a5269f65d57289f162b",
    "acestep/models/__init__.py": "748eec9214b9351add46ded4b2a16b6fce25101611cbca5015dd902b5f21e2dc",
    "acestep/models/base/__init__.py": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "acestep/models/base/apg_guidance.py": "33985a589f3af4f3daff071b71cae68da1bf971070da7c27223acbea9f5f2ae7",
    "acestep/models/base/configuration_acestep_v15.py": (
        "5f15aa79fe793bba3c00b6992dd193a269954950603d5031ecd7703b0fa69da1"
    ),
    "acestep/models/base/modeling_acestep_v15_base.py": (
        "add17954afb93f8e9ecf3e708105988072a25c40eb0d2af96527a87a04cb0fa4"
    ),
    "acestep/models/common/__init__.py": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "acestep/models/common/apg_guidance.py": "89ecdc4686e174225d6e6d304939d75892297dc3c19fbb11e04345dc3d4685db",
    "acestep/models/common/configuration_acestep_v15.py": (
        "0d66f38eba6a3d1665c9449a1a52724d68354477bc88dcf02389640e3602a0c7"
    ),
}
MISSING_SOURCE = 3  # exit status when ACE-Step's source is not there as pinned

# The tiny model: the sizes of the project's tiny pipeline (fixtures.py), a sliding window shorter than the
# sequences so that sliding and full attention differ, two layers per stack so that both kinds run.
TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "sliding_window": 4,
    "text_hidden_dim": 32,  # the tiny Qwen3 text encoder's width
    "timbre_hidden_dim": 64,
    "audio_acoustic_hidden_dim": 64,
    "in_channels": 192,
    "patch_size": 2,
    "fsq_dim": 32,
    "num_lyric_encoder_hidden_layers": 2,
    "num_timbre_encoder_hidden_layers": 2,
    "num_attention_pooler_hidden_layers": 2,
    "pool_window_size": 5,
    "model_version": "base",
}
SILENCE_FRAMES = 15000  # as published: 10 minutes at 25 latent frames per second
TIMBRE_FIX_FRAME = 750  # the reference-audio frames ACE-Step's handler cuts from the silence latent


def check_source() -> None:
    problems = []
    for name, digest in SOURCE_FILES.items():
        path = SOURCE / name
        if not path.is_file():
            problems.append(f"{name} missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name} differs from the pinned version")
    if problems:
        print(
            f"ACE-Step's source at {SOURCE} is not as pinned ({'; '.join(problems)}): check out "
            f"github.com/ace-step/ACE-Step-1.5 at {SOURCE_COMMIT} there, or set ACE_STEP_SOURCE",
            file=sys.stderr,
        )
        sys.exit(MISSING_SOURCE)
    sys.path.insert(0, str(SOURCE))


def build(dit: Path) -> None:
    import torch
    from acestep.models.base.modeling_acestep_v15_base import AceStepConditionGenerationModel
    from acestep.models.common.configuration_acestep_v15 import AceStepConfig

    torch.manual_seed(0)
    model = AceStepConditionGenerationModel(AceStepConfig(**TINY))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.2 * torch.randn_like(parameter))
            else:
                parameter.copy_(0.3 * torch.randn_like(parameter))
    model.save_pretrained(dit, safe_serialization=True)
    silence = torch.randn(1, SILENCE_FRAMES, TINY["timbre_hidden_dim"]) * 0.5 + torch.linspace(-1, 1, 64)
    torch.save(silence.transpose(1, 2).contiguous(), dit / "silence_latent.pt")  # stored [1, 64, frames]


def generate(dit: Path, inputs_path: Path, out: Path, steps: int, guidance: float, shift: float) -> None:
    import torch
    from acestep.models.base.modeling_acestep_v15_base import AceStepConditionGenerationModel
    from safetensors.torch import load_file, save_file

    torch.set_grad_enabled(False)
    model = AceStepConditionGenerationModel.from_pretrained(dit, attn_implementation="sdpa", dtype=torch.float32)
    model.eval()
    silence_latent = torch.load(dit / "silence_latent.pt", weights_only=True).transpose(1, 2)  # [1, frames, 64]
    given = load_file(inputs_path)
    noise = given["noise"]
    frames = noise.shape[1]
    fed = {
        "text_hidden_states": given["text_hidden_states"],
        "text_attention_mask": given["text_attention_mask"],
        "lyric_hidden_states": given["lyric_hidden_states"],
        "lyric_attention_mask": given["lyric_attention_mask"],
        # No reference audio: the silence stands in for it, and a song is generated over silence.
        "refer_audio_acoustic_hidden_states_packed": silence_latent[:, :TIMBRE_FIX_FRAME, :].clone(),
        "refer_audio_order_mask": torch.zeros(1, dtype=torch.long),
        "src_latents": silence_latent[:, :frames, :].clone(),
        "chunk_masks": torch.ones(1, frames, silence_latent.shape[-1]),
        "is_covers": torch.zeros(1, dtype=torch.long),
    }
    model.prepare_noise = lambda context_latents, seed: noise.clone()  # the given initial noise
    encoder_hidden_states, _, context_latents = model.prepare_condition(
        **fed,
        hidden_states=fed["src_latents"],
        attention_mask=torch.ones(1, frames),
        silence_latent=silence_latent,
    )
    result = model.generate_audio(
        **fed,
        silence_latent=silence_latent,
        seed=0,
        infer_method="ode",
        infer_steps=steps,
        diffusion_guidance_scale=guidance,
        shift=shift,
        use_adg=False,
        use_progress_bar=False,
    )
    latents = result["target_latents"] if isinstance(result, dict) else result[0]
    tensors = {"latents": latents, "encoder_hidden_states": encoder_hidden_states, "context_latents": context_latents}
    tensors |= {f"fed.{name}": value for name, value in fed.items()}
    save_file({name: value.contiguous().float() for name, value in tensors.items()}, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=("build", "generate"))
    parser.add_argument("dit", type=Path)
    parser.add_argument("inputs", type=Path, nargs="?")
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--shift", type=float, default=3.0)
    args = parser.parse_args()
    check_source()
    if args.action == "build":
        build(args.dit)
    else:
        generate(args.dit, args.inputs, args.out, args.steps, args.guidance, args.shift)


if __name__ == "__main__":
    main()
