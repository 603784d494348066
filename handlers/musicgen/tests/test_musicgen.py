"""MusicGen in process, on its tiny checkpoints: melody conditioning and window-by-window long pieces."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile
from loguru import logger

from handlers.musicgen.adapter import MusicGen
from handlers.musicgen.config import MusicGenConfig
from shared.errors import SettingsError
from shared.pipeline import Worker
from shared.settings import Settings, read_settings

pytestmark = pytest.mark.tiny


def _worker(tiny_volume, tmp_path, model_id: str = "tiny-random/musicgen", config=None) -> Worker:
    settings = Settings(volume_root=tiny_volume.ensure("musicgen"), model_id=model_id, output_dir=tmp_path)
    return Worker(MusicGen, settings, config)


def _tone_base64(frequency: float, seconds: float = 2.0, rate: int = 44100) -> str:
    times = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * frequency * times), rate, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


def _melody_job(melody: str | None, **extra) -> dict:
    job_input = {"prompt": ["calm", "busy"], "duration": 1.0, "seed": 5, "return_base64": True, **extra}
    if melody is not None:
        job_input["melody_audio"] = melody
    return {"id": "melody", "input": job_input}


def _decoded(result: dict) -> list[np.ndarray]:
    assert "error" not in result, result
    return [soundfile.read(io.BytesIO(base64.b64decode(o["base64"])))[0] for o in result["outputs"]]


def test_melody_checkpoint_follows_the_melody_audio(tiny_volume, tmp_path):
    worker = _worker(tiny_volume, tmp_path, "tiny-random/musicgen-melody")
    a440 = _decoded(worker.run(_melody_job(_tone_base64(440.0))))
    assert [len(samples) for samples in a440] == [32000, 32000]  # 44.1 kHz input, 32 kHz out
    assert np.array_equal(a440[0], _decoded(worker.run(_melody_job(_tone_base64(440.0))))[0])  # seeded
    # Same seed and prompts, another melody: the chromagram conditions the decoder, so the audio changes.
    assert not np.array_equal(a440[0], _decoded(worker.run(_melody_job(_tone_base64(262.0))))[0])
    assert len(_decoded(worker.run(_melody_job(None)))) == 2  # melody checkpoints also take text alone
    too_long = worker.run(_melody_job(_tone_base64(440.0), duration=31.0))
    assert too_long == {"error": "duration: melody checkpoints generate one window, at most 30 s"}


def test_melody_on_a_text_checkpoint_and_undecodable_audio_name_the_field(tiny_volume, tmp_path):
    worker = _worker(tiny_volume, tmp_path)
    refused = worker.run({"id": "m", "input": {"prompt": "x", "melody_audio": _tone_base64(440.0)}})
    assert refused == {"error": "melody_audio: tiny-random/musicgen is not a melody checkpoint; omit melody_audio"}
    garbage = base64.b64encode(b"not audio at all" * 10).decode()
    error = worker.run({"id": "g", "input": {"prompt": "x", "melody_audio": garbage}})["error"]
    assert error.startswith("melody_audio: audio does not decode")


def test_a_long_piece_is_generated_window_by_window(tiny_volume, tmp_path):
    config = MusicGenConfig(window_seconds=1.0, context_seconds=0.4)
    stages: list[str] = []
    sink = logger.add(
        lambda message: stages.append(message.record["message"]), filter=lambda r: "progress" in r["message"]
    )
    try:
        result = _worker(tiny_volume, tmp_path, config=config).run(
            {"id": "long", "input": {"prompt": "long", "duration": 2.5, "seed": 5}}
        )
    finally:
        logger.remove(sink)
    output = result["outputs"][0]
    assert soundfile.info(tmp_path / output["path"]).frames == 80000 and output["sample_rate"] == 32000
    # 1 s, then 0.6 s of new audio per window: 1.0 + 0.6 + 0.6 + 0.3 = 2.5 s in four windows.
    assert stages == [
        "progress: {'stage': 'generating', 'progress': 0.4}",
        "progress: {'stage': 'generating', 'progress': 0.64}",
        "progress: {'stage': 'generating', 'progress': 0.88}",
        "progress: {'stage': 'generating', 'progress': 1.0}",
    ]


def test_window_variables_are_checked_together(monkeypatch):
    monkeypatch.setenv("MUSICGEN_WINDOW_SECONDS", "5")
    monkeypatch.setenv("MUSICGEN_CONTEXT_SECONDS", "5")
    with pytest.raises(SettingsError, match=r"MUSICGEN_CONTEXT_SECONDS \(5\) must be shorter than MUSICGEN_WINDOW"):
        read_settings(MusicGenConfig)
