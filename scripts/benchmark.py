"""Handler overhead, measured side by side in one run on the same model and inputs.

    python scripts/benchmark.py [--duration 4] [--repeats 3] [--volume .volume-bench]

Builds a bench-size random-weight MusicGen (real EnCodec 32 kHz ratios and codebooks, wider and
deeper decoder than the test model) and prints two ratios:

  warm:  the handler's whole job (validate, generate, encode, store) / bare `model.generate` + decode
  first: the first job of a fresh worker (load included) / bare `from_pretrained` + generate + decode

Runs alternate between the two sides and report medians, so drift (page cache, CPU clock) hits both.
Output goes to a temporary local folder (S3 upload time is the network's, not the handler's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import MusicgenForConditionalGeneration, MusicgenProcessor  # noqa: E402

from handlers.musicgen.musicgen import MusicGen  # noqa: E402
from scripts.build_tiny_models import build  # noqa: E402
from shared.pipeline import Worker  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.volume import enforce_offline  # noqa: E402

MODEL_ID = "bench-random/musicgen"
PROMPT = "lofi piano beat with warm bass"
SEED = 1234


def _bare_generate(model, processor, duration: float) -> torch.Tensor:
    """What a user of transformers writes by hand: the same generation settings the handler uses."""
    audio_config = model.config.audio_encoder
    frames = round(duration * audio_config.frame_rate)
    delay = model.decoder.config.num_codebooks // audio_config.audio_channels - 1
    inputs = processor(text=[PROMPT], padding=True, return_tensors="pt")
    torch.manual_seed(SEED)
    with torch.inference_mode():
        waveform = model.generate(
            **inputs, max_new_tokens=frames + delay, do_sample=True, guidance_scale=3.0, top_k=250, temperature=1.0
        )
    return waveform[..., : frames * (audio_config.sampling_rate // audio_config.frame_rate)].float().cpu()


def _bare_load(folder: Path):
    model = MusicgenForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    return model, MusicgenProcessor.from_pretrained(folder)


def _timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of audio per job")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--volume", type=Path, default=Path(".volume-bench"))
    args = parser.parse_args(argv)
    enforce_offline()
    folder = args.volume / "musicgen" / MODEL_ID
    if not (folder / "model.safetensors").is_file():
        build(args.volume, ["musicgen"], "bench")
    job = {"id": "bench", "input": {"prompt": PROMPT, "duration": args.duration, "seed": SEED}}
    output_dir = Path(tempfile.mkdtemp(prefix="bench-outputs-"))
    settings = Settings(volume_root=args.volume, model_id=MODEL_ID, output_dir=output_dir, device="cpu")

    def handler_first_job() -> Worker:
        worker = Worker(MusicGen, settings)
        result = worker.run(job)
        assert "error" not in result, result
        return worker

    def bare_first_job():
        model, processor = _bare_load(folder)
        _bare_generate(model, processor, args.duration)
        return model, processor

    _bare_load(folder)  # page cache and lazy imports warm for both sides
    first_handler, first_bare, warm_handler, warm_bare = [], [], [], []
    stages: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        # Alternate which side goes first, so neither always inherits the other's warm allocator.
        if repeat % 2 == 0:
            seconds, worker = _timed(handler_first_job)
            first_handler.append(seconds)
        seconds, (model, processor) = _timed(bare_first_job)
        first_bare.append(seconds)
        if repeat % 2 == 1:
            seconds, worker = _timed(handler_first_job)
            first_handler.append(seconds)
        for _ in range(args.repeats):
            seconds, result = _timed(worker.run, job)
            warm_handler.append(seconds)
            for stage, stage_seconds in result["timings_s"].items():
                stages.setdefault(stage, []).append(stage_seconds)
            warm_bare.append(_timed(_bare_generate, model, processor, args.duration)[0])
        del worker, model, processor

    params = sum(p.numel() for p in _bare_load(folder)[0].parameters()) / 1e6
    median = statistics.median
    print(f"model: {MODEL_ID} ({params:.0f} M parameters), {args.duration:g} s of audio, device cpu")
    print(f"torch threads: {torch.get_num_threads()}, repeats: {args.repeats} cold, {args.repeats**2} warm")
    print(f"warm   handler job     {median(warm_handler):7.3f} s   bare generate+decode {median(warm_bare):7.3f} s")
    print(f"       ratio handler/bare: {median(warm_handler) / median(warm_bare):.3f}")
    print("       handler stages (median s): " + ", ".join(f"{k} {median(v):.3f}" for k, v in stages.items()))
    print(f"first  handler job     {median(first_handler):7.3f} s   bare load+generate   {median(first_bare):7.3f} s")
    print(f"       ratio handler/bare: {median(first_handler) / median(first_bare):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
