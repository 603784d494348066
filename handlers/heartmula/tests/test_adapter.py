"""HeartMuLa in process, on the tiny checkpoint: the worker's steps match heartlib's own, the residencies
place the two models phase by phase, KV caches never outlive a job, warm jobs do not grow memory."""

from __future__ import annotations

import base64
import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from heartlib import HeartMuLaGenPipeline

from handlers.heartmula.adapter import HeartMuLaSong, decode_windows, free_kv_caches, song_prompt
from handlers.heartmula.config import HeartMuLaWorkerConfig
from shared.memory import current_mib
from shared.pipeline import Worker
from shared.settings import Residency, Settings
from shared.stop import StopSignal
from shared.torch_runtime import RUNTIME

pytestmark = pytest.mark.tiny
MODEL_ID = "tiny-random/heartmula"
LYRICS = "[Verse]\nThe sun creeps in across the floor\n\n[Chorus]\nEvery day the light returns"


def _worker(tiny_volume, tmp_path: Path, residency: Residency, **config) -> Worker:
    settings = Settings(
        volume_root=tiny_volume.ensure("heartmula"), model_id=MODEL_ID, output_dir=tmp_path, residency=residency
    )
    worker = Worker(HeartMuLaSong, settings, HeartMuLaWorkerConfig(**config))
    worker.start()
    return worker


def _folder(tiny_volume) -> Path:
    return tiny_volume.ensure("heartmula") / "heartmula" / MODEL_ID


@pytest.fixture(scope="module")
def heartlib_pipeline(tiny_volume):
    """heartlib's own pipeline on the same folder (with the RoPE fix transformers 5 needs)."""
    pipeline = HeartMuLaGenPipeline.from_pretrained(
        str(_folder(tiny_volume)), device=torch.device("cpu"), dtype=torch.float32, version="3B"
    )
    for module in pipeline.mula.modules():
        if hasattr(module, "rope_init"):
            module.rope_init()
    return pipeline


@pytest.mark.parametrize("cfg_scale", [1.0, 1.5])
def test_the_prompt_is_heartlibs(heartlib_pipeline, cfg_scale):
    tags, lyrics = "Piano,Happy", LYRICS
    expected = heartlib_pipeline.preprocess({"tags": tags, "lyrics": lyrics}, cfg_scale=cfg_scale)
    prompt = song_prompt(heartlib_pipeline.text_tokenizer, heartlib_pipeline.config, tags, lyrics)
    assert torch.equal(expected["tokens"][0], prompt.rows)
    assert expected["muq_idx"][0] == prompt.reference_slot
    assert prompt.rows[0, -1] == 128000 and prompt.rows[-1, -1] == 128001  # Llama 3's ids, as published


@pytest.mark.parametrize("cfg_scale", [1.0, 1.5])
def test_frames_and_audio_are_heartlibs_for_the_same_seed(tiny_volume, tmp_path, heartlib_pipeline, cfg_scale):
    frames = 12
    result = _worker(tiny_volume, tmp_path, Residency.KEEP).run(
        {
            "id": "a",
            "input": {
                "tags": "piano",
                "lyrics": LYRICS,
                "max_duration_ms": frames * 80,
                "cfg_scale": cfg_scale,
                "seed": 5,
                "return_base64": True,
            },
        }
    )
    assert result["details"]["frames"] == frames, result
    free_kv_caches(heartlib_pipeline.mula)  # heartlib leaves them set up, and its next batch size may differ
    torch.manual_seed(5)
    inputs = heartlib_pipeline.preprocess({"tags": "piano", "lyrics": LYRICS}, cfg_scale=cfg_scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartlib autocasts on CPU in float32, which torch declines with a warning
        codes = heartlib_pipeline._forward(
            inputs, max_audio_length_ms=(frames - 1) * 80, temperature=1.0, topk=50, cfg_scale=cfg_scale
        )["frames"]
    expected = heartlib_pipeline.codec.detokenize(codes)  # (2, samples), float
    output = result["outputs"][0]
    assert (output["channels"], output["sample_rate"]) == (2, 48000)
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(output["base64"])), dtype="float32")
    assert samples.shape == (frames * 3840, 2) == expected.T.shape
    assert np.abs(samples - np.clip(expected.T.numpy(), -1, 1)).max() < 1e-3  # 16-bit WAV quantization


def test_the_sequential_plan_runs_its_five_phases_in_order(tiny_volume, tmp_path):
    worker = _worker(tiny_volume, tmp_path, Residency.SEQUENTIAL)
    result = worker.run({"id": "s", "input": {"tags": "piano", "max_duration_ms": 800, "seed": 1}})
    phases = [(phase["phase"], phase.get("on_device")) for phase in result["memory_mib"]["phases"]]
    assert phases == [
        ("place", ["heartmula"]),  # 0: the LM in, stale KV caches deleted
        ("generate", None),  # 1: frames
        ("place", ["heartcodec"]),  # 2: KV caches deleted, the LM out, the codec in
        ("decode", None),  # 3: audio
        ("cleanup", []),  # 4: the codec out, memory handed back
    ]
    assert all({"before_mib", "after_mib", "seconds"} <= set(phase) for phase in result["memory_mib"]["phases"])


def test_keep_leaves_both_models_on_the_device(tiny_volume, tmp_path):
    result = _worker(tiny_volume, tmp_path, Residency.KEEP).run(
        {"id": "k", "input": {"tags": "piano", "max_duration_ms": 400}}
    )
    placed = [phase["on_device"] for phase in result["memory_mib"]["phases"] if "on_device" in phase]
    assert placed == [["heartmula", "heartcodec"]] * 3


def _caches_left(worker: Worker) -> list[str]:
    with worker.cache.use() as (adapter, _):
        mula = adapter.parts["heartmula"]
        stacks = [name for name in ("backbone", "decoder") if getattr(mula, name).caches_are_setup()]
        return stacks + [name for name in ("backbone_causal_mask", "decoder_causal_mask") if name in mula._buffers]


def test_kv_caches_are_gone_after_a_job_and_after_a_cancelled_one(tiny_volume, tmp_path):
    worker = _worker(tiny_volume, tmp_path, Residency.KEEP)
    for cfg_scale in (1.0, 1.5):  # one batch row, then two: no stale cache of the first job's size
        assert "error" not in worker.run(
            {"id": "1", "input": {"tags": "piano", "max_duration_ms": 400, "cfg_scale": cfg_scale}}
        )
        assert _caches_left(worker) == []
    stop = StopSignal()
    stop.request()  # cancelled before the job starts: it stops at its first frame boundary
    assert worker.run({"id": "2", "input": {"tags": "piano", "max_duration_ms": 4000}}, stop=stop) == {
        "error": "job cancelled"
    }
    assert stop.steps == 1
    assert _caches_left(worker) == []


def test_twenty_warm_jobs_do_not_grow_process_memory(tiny_volume, tmp_path):
    worker = _worker(tiny_volume, tmp_path, Residency.SEQUENTIAL)
    job = {"input": {"tags": "piano", "lyrics": LYRICS, "max_duration_ms": 800, "cfg_scale": 1.5}}
    for index in range(5):  # allocator pools and lazy imports settle
        worker.run({"id": f"w{index}", **job})
    settled = current_mib(RUNTIME)
    for index in range(20):
        assert "error" not in worker.run({"id": f"j{index}", **job})
    grown = current_mib(RUNTIME) - settled
    print(f"process memory over 20 warm jobs: {settled:.0f} -> {settled + grown:.0f} MiB")
    assert grown < 40, f"{grown:.0f} MiB more after 20 jobs"


def test_a_song_longer_than_the_context_allows_is_refused_with_the_room_left(tiny_volume, tmp_path):
    worker = _worker(tiny_volume, tmp_path, Residency.KEEP, HEARTMULA_MAX_DURATION_MS=655_360)
    error = worker.run({"id": "c", "input": {"tags": "piano", "max_duration_ms": 655_360}})["error"]
    assert error.startswith("max_duration_ms: 655360 ms needs 8192 frames, but the lyrics and tags take ")
    assert "of the model's 8192 positions: at most" in error


def test_over_the_operator_cap_is_refused_before_any_model_runs(tiny_volume, tmp_path):
    worker = _worker(tiny_volume, tmp_path, Residency.UNLOAD, HEARTMULA_MAX_DURATION_MS=10_000)
    assert worker.run({"id": "o", "input": {"tags": "piano", "max_duration_ms": 20_000}}) == {
        "error": "max_duration_ms: 20000 is over this endpoint's cap (HEARTMULA_MAX_DURATION_MS=10000)"
    }
    assert worker.cache.load_count == 0


@pytest.mark.parametrize(("frames", "windows"), [(1, 1), (372, 1), (373, 2), (692, 2), (693, 3)])
def test_decode_windows_follow_detokenize(frames, windows):
    assert decode_windows(frames) == windows


def test_the_decoded_length_is_frames_at_12_5_per_second(tiny_volume, heartlib_pipeline):
    codes = torch.randint(0, 8192, (8, 5))
    assert heartlib_pipeline.codec.detokenize(codes).shape == (2, 5 * 3840)


def test_a_song_ends_where_the_model_ends_it(tiny_volume, tmp_path):
    worker = _worker(tiny_volume, tmp_path, Residency.KEEP)
    with worker.cache.use() as (adapter, _):
        head = adapter.parts["heartmula"].codebook0_head
    calls = 0

    def end_after_five_frames(_module, _inputs, logits: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return logits.index_fill(-1, torch.tensor([8193]), 1e4) if calls > 5 else logits  # audio_eos_id

    hook = head.register_forward_hook(end_after_five_frames)
    try:
        result = worker.run({"id": "e", "input": {"tags": "piano", "max_duration_ms": 4000, "return_base64": True}})
    finally:
        hook.remove()
    assert (result["details"]["frames"], result["details"]["ended_by"]) == (5, "eos")
    assert result["outputs"][0]["duration_seconds"] == 5 * 0.08


def test_a_folder_missing_a_piece_names_it_and_the_fix(tiny_volume, tmp_path):
    folder = tmp_path / "heartmula" / "org" / "partial"
    shutil.copytree(_folder(tiny_volume), folder)
    shutil.rmtree(folder / "HeartCodec-oss")
    settings = Settings(volume_root=tmp_path, model_id="org/partial", output_dir=tmp_path)
    error = Worker(HeartMuLaSong, settings).run({"id": "m", "input": {"tags": "piano"}})["error"]
    assert error.startswith(
        f"model folder {folder} is incomplete, missing: HeartCodec-oss/config.json, HeartCodec-oss/"
    )
    assert error.endswith(f"python scripts/populate_volume.py heartmula --model-id org/partial --volume {tmp_path}")
