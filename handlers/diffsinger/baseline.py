"""The bare onnxruntime calls the DiffSinger worker is measured against: the bank's graphs run directly
on the test score's segment (phoneme durations and notes given, pitch predicted), no request handling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from shared.testing import Baseline

_JOB = json.loads((Path(__file__).with_name("test_input.json")).read_text())["input"]


def _load(model_dir: Path) -> Any:
    from handlers.diffsinger.voicebank import load_voicebank

    bank = load_voicebank(model_dir, model_dir.parent.parent / "vocoders")
    names = {"acoustic": bank.acoustic.model("acoustic"), "vocoder": bank.vocoder.model}
    sessions = {
        name: onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for name, path in names.items()
    }
    return sessions["acoustic"], (bank, sessions)


def _run(loaded: Any, seed: int) -> np.ndarray:
    bank, sessions = loaded
    onnxruntime.set_seed(seed)
    segment = _JOB["ds"]
    phonemes = segment["ph_seq"].split()
    seconds = np.cumsum([float(value) for value in segment["ph_dur"].split()])
    frame = bank.acoustic.frame_seconds
    durations = np.diff(np.round(seconds / frame + 0.5).astype(np.int64), prepend=0)[None]
    frames = int(durations.sum())
    # The notes' pitch held over their frames (what the worker does for a bank without a pitch model).
    midi = {"C4": 60.0, "E4": 64.0, "G4": 67.0}
    notes = segment["note_seq"].split()
    held = [midi.get(name, 60.0) for name in notes]
    note_ends = np.cumsum([float(value) for value in segment["note_dur"].split()])
    note_frames = np.diff(np.round(note_ends / frame + 0.5).astype(np.int64), prepend=0)
    note_frames[-1] += frames - note_frames.sum()
    f0 = (440.0 * 2 ** ((np.repeat(held, note_frames) - 69) / 12)).astype(np.float32)[None]
    acoustic = sessions["acoustic"]
    available = {
        "tokens": bank.acoustic.token_ids(phonemes),
        "languages": bank.acoustic.language_ids(phonemes),
        "durations": durations,
        "f0": f0,
        "energy": np.full((1, frames), -40.0, dtype=np.float32),
        "breathiness": np.full((1, frames), -60.0, dtype=np.float32),
        "gender": np.zeros((1, frames), dtype=np.float32),
        "velocity": np.ones((1, frames), dtype=np.float32),
        "spk_embed": np.broadcast_to(bank.acoustic.speaker_embeds[0], (1, frames, bank.acoustic.hidden_size)).astype(
            np.float32
        ),
        "depth": np.array(min(1.0, bank.max_depth), dtype=np.float32),
        "steps": np.array(_JOB["steps"], dtype=np.int64),
    }
    feeds = {arg.name: available[arg.name] for arg in acoustic.get_inputs()}
    mel = acoustic.run(["mel"], feeds)[0]
    if bank.mel.mel_base != bank.vocoder.mel.mel_base:
        mel = mel * np.float32(np.log(10) if bank.mel.mel_base == "10" else 1 / np.log(10))
    return sessions["vocoder"].run(["waveform"], {"mel": mel, "f0": f0})[0]


BASELINE = Baseline(job_input=_JOB, load=_load, run=_run)
