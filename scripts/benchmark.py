"""Handler overhead, measured side by side in one run on the same model and inputs.

    python scripts/benchmark.py musicgen [--repeats 3] [--volume .volume-bench]
    python scripts/benchmark.py higgs_audio
    python scripts/benchmark.py voxcpm      # also: time to the first streamed chunk vs the whole job
    python scripts/benchmark.py ace_step    # also: memory before load / after load / after unload

Builds a bench-size random-weight model of the real architecture (real codec ratios and codebooks,
a wider and deeper LM than the test model) and prints two ratios:

  warm:  the handler's whole job (validate, generate, encode, store) / the bare library calls
         (processor, `model.generate`, decode) with the same settings, seed and prompt
  first: the first job of a fresh worker (load included) / bare `from_pretrained` + the same calls

Runs alternate between the two sides and report medians, so drift (page cache, CPU clock) hits both.
Output goes to a temporary local folder (S3 upload time is the network's, not the handler's).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import voxcpm as voxcpm_library  # noqa: E402
from diffusers import AceStepPipeline  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    DacFeatureExtractor,
    HiggsAudioV2ForConditionalGeneration,
    HiggsAudioV2Processor,
    HiggsAudioV2TokenizerModel,
    MusicgenForConditionalGeneration,
    MusicgenProcessor,
)

from handlers.ace_step.ace_step import AceStep  # noqa: E402
from handlers.higgs_audio.higgs_audio import HiggsAudio, build_prompt  # noqa: E402
from handlers.musicgen.musicgen import MusicGen  # noqa: E402
from handlers.voxcpm.voxcpm_tts import VoxCPM  # noqa: E402
from scripts.build_tiny_models import BUILDERS, build  # noqa: E402
from shared.adapter import ModelAdapter  # noqa: E402
from shared.pipeline import Worker  # noqa: E402
from shared.settings import Residency, Settings  # noqa: E402
from shared.volume import enforce_offline  # noqa: E402

SEED = 1234


@dataclass(frozen=True)
class BenchCase:
    adapter: type[ModelAdapter]
    job_input: dict[str, Any]
    bare_load: Callable[[Path], Any]  # model folder -> (the torch module, anything else bare_run needs)
    bare_run: Callable[[Any], Any]


MUSICGEN_PROMPT, MUSICGEN_SECONDS = "lofi piano beat with warm bass", 2.0


def _musicgen_load(folder: Path):
    model = MusicgenForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    return model, MusicgenProcessor.from_pretrained(folder)


def _musicgen_run(loaded) -> torch.Tensor:
    model, processor = loaded
    audio_config = model.config.audio_encoder
    frames = round(MUSICGEN_SECONDS * audio_config.frame_rate)
    delay = model.decoder.config.num_codebooks // audio_config.audio_channels - 1
    inputs = processor(text=[MUSICGEN_PROMPT], padding=True, return_tensors="pt")
    torch.manual_seed(SEED)
    with torch.inference_mode():
        waveform = model.generate(
            **inputs, max_new_tokens=frames + delay, do_sample=True, guidance_scale=3.0, top_k=250, temperature=1.0
        )
    return waveform[..., : frames * (audio_config.sampling_rate // audio_config.frame_rate)].float().cpu()


HIGGS_TEXT, HIGGS_SCENE, HIGGS_TOKENS = "The sun rises in the east and sets in the west.", "A quiet room.", 200


def _higgs_load(folder: Path):
    tokenizer_folder = folder.parent / "higgs-audio-v2-tokenizer"
    model = HiggsAudioV2ForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    processor = HiggsAudioV2Processor(
        feature_extractor=DacFeatureExtractor.from_pretrained(tokenizer_folder),
        tokenizer=AutoTokenizer.from_pretrained(folder),
        audio_tokenizer=HiggsAudioV2TokenizerModel.from_pretrained(tokenizer_folder).eval(),
    )
    return model, processor


def _higgs_run(loaded) -> torch.Tensor:
    model, processor = loaded
    inputs = processor(text=build_prompt(HIGGS_SCENE, [], HIGGS_TEXT), return_tensors="pt")
    torch.manual_seed(SEED)
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=True, temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=HIGGS_TOKENS)
    config.ras_win_len, config.ras_win_max_num_repeat = 7, 2  # Higgs' sampler reads these attributes
    with torch.inference_mode():
        return processor.decode(model.generate(**inputs, generation_config=config))


VOXCPM_TEXT = "Streaming speech from a RunPod worker, one patch after another, until the sentence ends."


def _voxcpm_load(folder: Path):
    tts = voxcpm_library.VoxCPM(str(folder), zipenhancer_model_path=None, optimize=False, device="cpu")
    return tts.tts_model, tts


def _voxcpm_run(loaded) -> np.ndarray:
    _, tts = loaded
    torch.manual_seed(SEED)
    return tts.generate(text=VOXCPM_TEXT, cfg_value=2.0, inference_timesteps=10, retry_badcase=False)


ACE_CAPTION, ACE_SECONDS, ACE_STEPS = "lo-fi hip hop, warm rhodes", 4.0, 8


def _ace_load(folder: Path):
    pipe = AceStepPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe.transformer, pipe


def _ace_run(loaded) -> torch.Tensor:
    _, pipe = loaded
    torch.manual_seed(SEED)
    with torch.inference_mode():
        return pipe(prompt=[ACE_CAPTION], lyrics=[""], audio_duration=ACE_SECONDS, num_inference_steps=ACE_STEPS).audios


CASES = {
    "musicgen": BenchCase(
        MusicGen, {"prompt": MUSICGEN_PROMPT, "duration": MUSICGEN_SECONDS}, _musicgen_load, _musicgen_run
    ),
    "higgs_audio": BenchCase(
        HiggsAudio,
        {"transcript": HIGGS_TEXT, "scene_prompt": HIGGS_SCENE, "max_new_tokens": HIGGS_TOKENS},
        _higgs_load,
        _higgs_run,
    ),
    "ace_step": BenchCase(
        AceStep,
        {"caption": ACE_CAPTION, "audio_duration": ACE_SECONDS, "steps": ACE_STEPS},
        _ace_load,
        _ace_run,
    ),
    "voxcpm": BenchCase(
        VoxCPM,
        {"target_text": VOXCPM_TEXT, "retry_badcase": False},
        _voxcpm_load,
        _voxcpm_run,
    ),
}


def _timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--volume", type=Path, default=Path(".volume-bench"))
    args = parser.parse_args(argv)
    enforce_offline()
    case = CASES[args.model]
    model_id = BUILDERS[args.model].model_id.replace("tiny-random", "bench-random")
    folder = args.volume / case.adapter.name / model_id
    if not (folder / "model.safetensors").is_file():
        build(args.volume, [args.model], "bench")
    job = {"id": "bench", "input": case.job_input | {"seed": SEED}}
    output_dir = Path(tempfile.mkdtemp(prefix="bench-outputs-"))
    # Residency keep on both sides of the ratio (the bare side keeps its model); ACE-Step's unload
    # default is measured separately below.
    settings = Settings(
        volume_root=args.volume, model_id=model_id, output_dir=output_dir, device="cpu", residency=Residency.KEEP
    )

    def handler_first_job() -> Worker:
        worker = Worker(case.adapter, settings)
        result = worker.run(job)
        assert "error" not in result, result
        return worker

    def bare_first_job():
        loaded = case.bare_load(folder)
        case.bare_run(loaded)
        return loaded

    case.bare_load(folder)  # page cache and lazy imports warm for both sides
    first_handler, first_bare, warm_handler, warm_bare = [], [], [], []
    stages: dict[str, list[float]] = {}
    samples = {}
    for repeat in range(args.repeats):
        # Alternate which side goes first, so neither always inherits the other's warm allocator.
        if repeat % 2 == 0:
            seconds, worker = _timed(handler_first_job)
            first_handler.append(seconds)
        seconds, loaded = _timed(bare_first_job)
        first_bare.append(seconds)
        if repeat % 2 == 1:
            seconds, worker = _timed(handler_first_job)
            first_handler.append(seconds)
        for _ in range(args.repeats):
            seconds, result = _timed(worker.run, job)
            warm_handler.append(seconds)
            for stage, stage_seconds in result["timings_s"].items():
                stages.setdefault(stage, []).append(stage_seconds)
            samples["handler"] = round(result["outputs"][0]["duration_seconds"] * result["outputs"][0]["sample_rate"])
            seconds, waveform = _timed(case.bare_run, loaded)
            warm_bare.append(seconds)
            samples["bare"] = waveform.shape[-1]
        del worker, loaded

    params = sum(p.numel() for p in case.bare_load(folder)[0].parameters()) / 1e6
    median = statistics.median
    print(f"model: {model_id} ({params:.0f} M params in its main module), cpu, {torch.get_num_threads()} threads")
    print(f"same work on both sides: {samples['handler']} samples (handler) vs {samples['bare']} (bare)")
    print(f"repeats: {args.repeats} cold, {args.repeats**2} warm (medians)")
    print(f"warm   handler job     {median(warm_handler):7.3f} s   bare calls           {median(warm_bare):7.3f} s")
    print(f"       ratio handler/bare: {median(warm_handler) / median(warm_bare):.3f}")
    print("       handler stages: " + ", ".join(f"{k} {median(v):.3f}" for k, v in stages.items()))
    print(f"first  handler job     {median(first_handler):7.3f} s   bare load + calls    {median(first_bare):7.3f} s")
    print(f"       ratio handler/bare: {median(first_handler) / median(first_bare):.3f}")
    if case.adapter.streams:
        _time_to_first_chunk(worker_factory=lambda: Worker(case.adapter, settings), job=job, repeats=args.repeats)
    if case.adapter.default_residency is Residency.UNLOAD:
        _memory_across_unload(Worker(case.adapter, replace(settings, residency=Residency.UNLOAD)), job)
    return 0


def _memory_across_unload(worker: Worker, job: dict[str, Any]) -> None:
    """Unload-after-job: memory before the load, after it, at the job's peak, and after the unload."""
    worker.run(job)  # one-time allocations (imports, thread pools) out of the way
    memory = worker.run(job)["memory_mib"]
    print(
        f"unload {memory['kind']}: before load {memory['before_job']:.0f} MiB, after load {memory['after_load']:.0f}"
        f", peak {memory['peak']:.0f}, after unload {memory['after_job']:.0f}"
    )


def _time_to_first_chunk(worker_factory: Callable[[], Worker], job: dict[str, Any], repeats: int) -> None:
    """Streaming: how soon the first audio chunk is out, against the whole streamed job, same run."""
    worker = worker_factory()
    streaming_job = {"id": "bench-stream", "input": job["input"] | {"stream": True}}
    worker.run(streaming_job, lambda item: None)  # warm
    first, whole = [], []
    for _ in range(repeats**2):
        arrivals: list[float] = []
        started = time.perf_counter()
        worker.run(streaming_job, lambda item, arrivals=arrivals: arrivals.append(time.perf_counter()))
        whole.append(time.perf_counter() - started)
        first.append(arrivals[0] - started)
    median = statistics.median
    print(f"stream first chunk     {median(first):7.3f} s   whole streamed job   {median(whole):7.3f} s")
    print(f"       ratio first-chunk/whole: {median(first) / median(whole):.3f} ({len(arrivals)} chunks)")


if __name__ == "__main__":
    sys.exit(main())
