"""Peak process memory of decoding a long song's latents, tiled (as the worker does) and whole, side by side.

    python -m handlers.ace_step.decode_memory [--seconds 120] [--volume .volume-bench]

Builds the bench-size pipeline when absent; each mode runs in a process of its own so that each peak
(ru_maxrss) is its own. On a GPU (--device cuda) it reports the GPU's peak instead.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path

MODEL_ID = "bench-random/acestep-v15-base"


def _decode(vae_folder: Path, tiled: bool, seconds: float, device: str) -> str:
    import torch
    from diffusers import AutoencoderOobleck

    vae = AutoencoderOobleck.from_pretrained(vae_folder).to(device).eval()
    if tiled:
        vae.enable_tiling()
    latents = torch.randn(1, 64, round(seconds * 25), device=device)
    with torch.inference_mode():
        samples = vae.decode(latents).sample.shape[-1]
    if device == "cuda":
        peak = f"GPU peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    else:
        peak = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    return f"{'tiled' if tiled else 'whole'}: {seconds:g} s = {samples} samples, {peak}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--volume", type=Path, default=Path(".volume-bench"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", choices=("tiled", "whole"), help=argparse.SUPPRESS)  # one measurement
    args = parser.parse_args(argv)
    vae_folder = args.volume / "ace_step" / MODEL_ID / "vae"
    if args.mode is not None:
        print(_decode(vae_folder, args.mode == "tiled", args.seconds, args.device))
        return 0
    if not vae_folder.is_dir():
        from handlers.ace_step.fixtures import build_ace_step

        build_ace_step(vae_folder.parent, "bench")
    for mode in ("tiled", "whole"):
        command = [sys.executable, "-m", "handlers.ace_step.decode_memory", "--mode", mode]
        command += ["--seconds", str(args.seconds), "--volume", str(args.volume), "--device", args.device]
        print(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
