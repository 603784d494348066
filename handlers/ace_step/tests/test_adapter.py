"""ACE-Step in process: unload-after-job hands the memory back; keep holds it; request rules."""

from __future__ import annotations

import base64
import gc
import hashlib
import io
import weakref
from pathlib import Path

import numpy as np
import pytest
import soundfile

from handlers.ace_step.adapter import AceStep
from handlers.ace_step.config import AceStepConfig
from handlers.ace_step.fixtures import build_ace_step_lora
from scripts.build_tiny_models import build
from shared.pipeline import Worker
from shared.settings import Residency, Settings

pytestmark = pytest.mark.tiny

JOB = {"id": "m", "input": {"caption": "x", "audio_duration": 1.0, "steps": 2, "seed": 1}}


@pytest.fixture(scope="module")
def bench_volume(tmp_path_factory) -> Path:
    """A ~220 MB pipeline: big enough that holding it or not shows in process memory."""
    volume = tmp_path_factory.mktemp("ace-bench")
    build(volume, "ace_step", "bench")
    return volume


def _worker(volume: Path, tmp_path: Path, residency: Residency | None) -> Worker:
    settings = Settings(
        volume_root=volume, model_id="bench-random/acestep-v15-base", output_dir=tmp_path, residency=residency
    )
    return Worker(AceStep, settings)


def test_unload_after_job_is_the_default_and_returns_the_memory(bench_volume, tmp_path):
    worker = _worker(bench_volume, tmp_path, None)
    assert worker.residency is Residency.UNLOAD
    worker.run(JOB)  # first use: imports and one-time allocations out of the way
    with worker.cache.use() as (adapter, _):
        pipeline = weakref.ref(adapter.pipe)
        del adapter
    assert pipeline() is None  # the model objects were released with the job
    result = worker.run(JOB)
    memory = result["memory_mib"]
    assert result["model"]["loaded_this_job"] is True and not worker.cache.is_loaded
    assert memory["after_job"] - memory["before_job"] < 32, memory


def test_keep_holds_the_model_between_jobs(bench_volume, tmp_path):
    gc.collect()
    worker = _worker(bench_volume, tmp_path, Residency.KEEP)
    first = worker.run(JOB)
    second = worker.run(JOB)
    assert second["model"]["loaded_this_job"] is False and worker.cache.is_loaded
    assert second["memory_mib"]["after_job"] - first["memory_mib"]["before_job"] > 100, (first, second)


def _stem_base64(seconds: float = 2.0, rate: int = 32000) -> str:
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.2 * np.sin(np.arange(int(seconds * rate)) / 9.0), rate, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    "extra",
    [
        {"task": "repaint", "caption": "brighter", "repainting_start": 0.5, "repainting_end": 1.5},
        {"task": "cover", "caption": "jazz trio"},
        {"task": "extract", "track_type": "vocals"},
    ],
    ids=["repaint", "cover", "extract"],
)
def test_the_other_source_tasks_run(tiny_volume, tmp_path, extra):
    volume = tiny_volume.ensure("ace_step")
    settings = Settings(volume_root=volume, model_id="tiny-random/acestep-v15-base", output_dir=tmp_path)
    result = Worker(AceStep, settings).run({"id": "t", "input": {"audio": _stem_base64(), "steps": 2, **extra}})
    assert "error" not in result, result
    assert result["details"]["task"] == extra["task"]
    assert [(o["duration_seconds"], o["channels"], o["sample_rate"]) for o in result["outputs"]] == [(2.0, 2, 48000)]


def test_a_source_longer_than_the_cap_is_refused_before_any_model_loads(tmp_path):
    """audio_duration is capped at 600 s; a longer source with audio_duration omitted is refused alike."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(4000 * 610), 4000, format="WAV", subtype="PCM_U8")  # 610 s in 2.4 MB
    job = {"task": "cover", "audio": base64.b64encode(buffer.getvalue()).decode(), "steps": 2}
    worker = Worker(AceStep, Settings(volume_root=tmp_path, output_dir=tmp_path))  # no model folder: never loaded
    assert worker.run({"id": "long", "input": job}) == {
        "error": "audio: audio is 610.0 s long, over this worker's 600 s cap"
    }


def _tiny(tiny_volume, tmp_path: Path, model_id: str, residency: Residency | None = None) -> Worker:
    settings = Settings(
        volume_root=tiny_volume.ensure("ace_step"), model_id=model_id, output_dir=tmp_path, residency=residency
    )
    return Worker(AceStep, settings)


@pytest.mark.parametrize(
    ("model_id", "checkpoint", "steps", "guidance"),
    [
        ("tiny-random/acestep-v15-base", {"variant": "base", "xl": False}, 50, 7.0),
        ("tiny-random/acestep-v15-xl-turbo-diffusers", {"variant": "turbo", "xl": True}, 8, 1.0),
        ("tiny-random/acestep-v15-xl-sft-diffusers", {"variant": "sft", "xl": True}, 50, 7.0),
    ],
)
def test_the_checkpoint_variant_sets_the_defaults(tiny_volume, tmp_path, model_id, checkpoint, steps, guidance):
    result = _tiny(tiny_volume, tmp_path, model_id).run({"id": "v", "input": {"caption": "x", "audio_duration": 1.0}})
    details = result["details"]
    assert (details["checkpoint"], details["steps_used"], details["guidance_scale_used"]) == (
        checkpoint,
        steps,
        guidance,
    )


def test_guidance_on_a_turbo_checkpoint_is_refused(tiny_volume, tmp_path):
    worker = _tiny(tiny_volume, tmp_path, "tiny-random/acestep-v15-xl-turbo-diffusers")
    job = {"caption": "x", "audio_duration": 1.0, "guidance_scale": 5.0}
    assert worker.run({"id": "g", "input": job}) == {
        "error": "guidance_scale: 5 on a turbo checkpoint, which is guidance-distilled; leave it unset or 1"
    }
    assert "error" not in worker.run({"id": "g1", "input": job | {"guidance_scale": 1.0, "steps": 2}})


def test_a_long_song_is_decoded_in_tiles_to_the_exact_length(tiny_volume, tmp_path):
    worker = _tiny(tiny_volume, tmp_path, "tiny-random/acestep-v15-xl-turbo-diffusers", Residency.KEEP)
    job = {"caption": "a long song", "audio_duration": 61.3, "steps": 2, "seed": 4}
    tiled = worker.run({"id": "l", "input": job})
    assert tiled["details"]["decode_tiles"] == 4  # 1533 latent frames, 384 new ones per 512-frame tile
    samples, rate = soundfile.read(tmp_path / tiled["outputs"][0]["path"])
    assert rate == 48000 and samples.shape == (round(61.3 * 48000), 2)
    with worker.cache.use() as (adapter, _):
        adapter.pipe.vae.disable_tiling()  # the same song decoded whole: same length, same song
    whole = worker.run({"id": "w", "input": job})
    assert whole["details"]["decode_tiles"] == 1
    reference, _ = soundfile.read(tmp_path / whole["outputs"][0]["path"])
    assert reference.shape == samples.shape
    assert np.corrcoef(reference.ravel(), samples.ravel())[0, 1] > 0.9


def test_complete_adds_the_instruments_asked_for(tiny_volume, tmp_path):
    worker = _tiny(tiny_volume, tmp_path, "tiny-random/acestep-v15-base")
    job = {"task": "complete", "audio": _stem_base64(), "complete_with": ["drums", "bass"], "steps": 2}
    result = worker.run({"id": "c", "input": job})
    assert "error" not in result, result
    assert result["details"]["task"] == "complete"
    assert [(o["duration_seconds"], o["channels"]) for o in result["outputs"]] == [(2.0, 2)]


def test_an_operator_lora_is_verified_applied_and_named(tiny_volume, tmp_path):
    volume = tiny_volume.ensure("ace_step")
    model_id = "tiny-random/acestep-v15-base"
    lora = build_ace_step_lora(volume / "ace_step" / model_id, tmp_path / "lora")
    digest = hashlib.sha256(lora.read_bytes()).hexdigest()
    job = {"caption": "x", "audio_duration": 1.0, "steps": 2, "seed": 3}

    def run(**lora_settings) -> dict:
        config = AceStepConfig(ACE_STEP_LORA_CACHE_DIR=str(tmp_path / "cache"), **lora_settings)
        settings = Settings(volume_root=volume, model_id=model_id, output_dir=tmp_path / "out")
        return Worker(AceStep, settings, config).run(
            {"id": lora_settings.get("ACE_STEP_LORA_ID", "plain"), "input": job}
        )

    plain = run()
    uri = f"file://{lora}"
    applied = run(ACE_STEP_LORA_URI=uri, ACE_STEP_LORA_SHA256=digest, ACE_STEP_LORA_ID="tiny-style")
    assert plain["details"]["lora"] is None
    assert applied["details"]["lora"] == {"id": "tiny-style", "scale": 1.0}
    heard = [soundfile.read(tmp_path / "out" / result["outputs"][0]["path"])[0] for result in (plain, applied)]
    assert not np.allclose(heard[0], heard[1])  # the LoRA changes the song
    wrong = run(ACE_STEP_LORA_URI=uri, ACE_STEP_LORA_SHA256="0" * 64, ACE_STEP_LORA_ID="other")
    assert wrong["error"].startswith(f"ACE_STEP_LORA_SHA256: the file at {uri} has sha256 {digest}, expected 000")
