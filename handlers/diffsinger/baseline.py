"""The bare onnxruntime calls the DiffSinger worker is measured against: the acoustic graph and the vocoder
on one segment whose pitch and variance curves the score fixes (so the worker predicts none either)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from shared.testing import Baseline

_SEGMENT = json.loads((Path(__file__).with_name("test_input.json")).read_text())["input"]["ds"]
_FRAME = 512 / 44100
_FRAMES = 180  # the segment's 2.08 s on the 512/44100 grid
_CURVES = {"f0_seq": 261.63, "energy": -40.0, "breathiness": -60.0}
JOB_INPUT = {
    "ds": _SEGMENT
    | {name: " ".join([str(value)] * _FRAMES) for name, value in _CURVES.items()}
    | {"f0_timestep": _FRAME, "energy_timestep": _FRAME, "breathiness_timestep": _FRAME},
    "speaker": "tiny.alto",
    "steps": 20,
}


def _load(model_dir: Path) -> Any:
    from handlers.diffsinger.voicebank import load_voicebank

    bank = load_voicebank(model_dir, model_dir.parent.parent / "vocoders")
    return bank, {
        name: onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for name, path in (("acoustic", bank.acoustic.model("acoustic")), ("vocoder", bank.vocoder.model))
    }


def _run(loaded: Any, seed: int) -> np.ndarray:
    bank, sessions = loaded
    onnxruntime.set_seed(seed)
    phonemes = _SEGMENT["ph_seq"].split()
    ends = np.cumsum([float(value) for value in _SEGMENT["ph_dur"].split()])
    durations = np.diff(np.round(ends / _FRAME + 0.5).astype(np.int64), prepend=0)[None]
    frames = int(durations.sum())

    def constant(value: float) -> np.ndarray:
        return np.full((1, frames), value, dtype=np.float32)

    f0 = constant(_CURVES["f0_seq"])
    available = {
        "tokens": bank.acoustic.token_ids(phonemes),
        "languages": bank.acoustic.language_ids(phonemes),
        "durations": durations,
        "f0": f0,
        "energy": constant(_CURVES["energy"]),
        "breathiness": constant(_CURVES["breathiness"]),
        "gender": constant(0.0),
        "velocity": constant(1.0),
        "spk_embed": np.broadcast_to(bank.acoustic.speaker_embeds[0], (1, frames, bank.acoustic.hidden_size)).copy(),
        "depth": np.array(min(1.0, bank.max_depth), dtype=np.float32),
        "steps": np.array(JOB_INPUT["steps"], dtype=np.int64),
    }
    acoustic = sessions["acoustic"]
    mel = acoustic.run(["mel"], {arg.name: available[arg.name] for arg in acoustic.get_inputs()})[0]
    if bank.mel.mel_base != bank.vocoder.mel.mel_base:
        mel = mel * np.float32(np.log(10) if bank.mel.mel_base == "10" else 1 / np.log(10))
    return sessions["vocoder"].run(["waveform"], {"mel": mel, "f0": f0})[0]


BASELINE = Baseline(job_input=JOB_INPUT, load=_load, run=_run)
