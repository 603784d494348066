"""Cross-check against Boson AI's own implementation, boson-multimodal 0.1.1 (PyPI; github.com/boson-ai/higgs-audio).

In its own venv (`.cache/venv-reference-higgs_audio`, which `make test-reference` builds: it pins transformers < 4.47),
boson_side.py builds a tiny random-weight checkpoint with Boson's classes, saved in Boson's layout (the LM with
save_pretrained, the audio tokenizer as config.json + model.pth), and generates greedily with Boson's serving engine.
Here, the populator converts both folders (scripts/populate_volume.py --from, which calls
handlers/higgs_audio/convert.py) and the worker generates with its own code path (prompt.py's prompt, the adapter's
generation and frame extraction, greedy): the prompt's token ids, the audio codes and the decoded waveform must be
Boson's exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from handlers.higgs_audio.adapter import HiggsAudio
from handlers.higgs_audio.catalog import TOKENIZER_NAME
from handlers.higgs_audio.config import HiggsAudioConfig
from handlers.higgs_audio.prompt import build_prompt
from scripts.populate_volume import CONVERSION_LOG
from scripts.populate_volume import main as populate
from shared.pipeline import Worker
from shared.settings import Settings
from shared.stop import StopSignal

pytestmark = pytest.mark.reference

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
REFERENCE_VENV = REPO / ".cache" / "venv-reference-higgs_audio"
REFERENCE_PYTHON = Path(os.environ.get("HIGGS_AUDIO_REFERENCE_PYTHON", REFERENCE_VENV / "bin" / "python"))
LM_ID = "bosonai/higgs-audio-v2-generation-3B-base"  # as Boson published it before 2026-04 (renamed since)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """Boson's side, run once: its checkpoint folders, and what its engine generated."""
    if not REFERENCE_PYTHON.exists():
        pytest.skip(f"no reference venv at {REFERENCE_PYTHON}: `make test-reference` builds it")
    out = tmp_path_factory.mktemp("boson")
    done = subprocess.run(
        [REFERENCE_PYTHON, HERE / "boson_side.py", out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def converted(reference, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """Boson's folders converted by the populator, as an operator runs it (--from a local folder); its rate."""
    volume = tmp_path_factory.mktemp("volume")
    rates = {}
    for folder, model_id in ((reference / "lm", LM_ID), (reference / "tokenizer", f"bosonai/{TOKENIZER_NAME}")):
        size = sum(path.stat().st_size for path in folder.iterdir())
        started = time.perf_counter()
        assert populate(["higgs_audio", "--from", str(folder), "--model-id", model_id, "--volume", str(volume)]) == 0
        rates[model_id] = size / (time.perf_counter() - started)
        assert (volume / "higgs_audio" / model_id / CONVERSION_LOG).is_file()
    return volume, rates


def _worker_generates(volume: Path, boson: dict[str, Any], output: Path) -> tuple[list[int], list[list[int]], Any]:
    """The worker's own path: its prompt, generation and frame extraction; greedy, repetition-aware sampling off."""
    settings = Settings(volume_root=volume, model_id=LM_ID, output_dir=output, device="cpu")
    worker = Worker(HiggsAudio, settings, HiggsAudioConfig())
    with worker.cache.use() as (adapter, _):
        prompt = build_prompt(boson["scene"], [], boson["transcript"])
        prompt_ids = adapter.processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        decoded = []
        decode = adapter.processor.audio_tokenizer.decode
        adapter.processor.audio_tokenizer.decode = lambda codes: decoded.append(codes.clone()) or decode(codes)
        request = adapter.request_model(
            transcript=boson["transcript"], max_new_tokens=boson["max_new_tokens"], ras_win_len=0
        )
        config = adapter._generation_config(request)
        config.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        waveform, frames = adapter._generate(prompt, [], config, StopSignal())
    assert len(decoded) == 1 and frames == decoded[0].shape[-1]
    return prompt_ids, decoded[0][0].tolist(), waveform


def test_the_worker_reproduces_boson_engines_greedy_audio_on_the_converted_checkpoint(reference, converted, tmp_path):
    volume, rates = converted
    boson = json.loads((reference / "result.json").read_text())
    prompt_ids, codes, waveform = _worker_generates(volume, boson, tmp_path)
    assert prompt_ids == boson["prompt_token_ids"], "the worker's prompt is not Boson's"
    assert np.asarray(boson["audio_codes"]).shape[1] >= 16, "too short a stream to compare"
    assert codes == boson["audio_codes"], "the worker's audio codes differ from Boson's engine's"
    boson_waveform = np.load(reference / "waveform.npy")
    assert waveform.shape == boson_waveform.shape
    np.testing.assert_allclose(waveform, boson_waveform, rtol=0, atol=1e-6)  # the converted codec decodes as Boson's
    print(f"conversion rate (bytes/s): {rates}; {len(codes[0])} frames of {len(codes)} codebooks equal")


def test_boson_format_folders_are_converted_and_no_longer_recognised(reference, converted):
    from handlers.higgs_audio.convert import is_boson_audio_tokenizer, is_boson_lm

    volume, _ = converted
    assert is_boson_lm(reference / "lm") and is_boson_audio_tokenizer(reference / "tokenizer")
    lm, tokenizer = volume / "higgs_audio" / LM_ID, volume / "higgs_audio" / "bosonai" / TOKENIZER_NAME
    assert not is_boson_lm(lm) and not is_boson_audio_tokenizer(tokenizer)
    assert json.loads((lm / "config.json").read_text())["model_type"] == "higgs_audio_v2"
    assert json.loads((tokenizer / "config.json").read_text())["model_type"] == "higgs_audio_v2_tokenizer"
    assert torch.load(reference / "tokenizer" / "model.pth", weights_only=True)  # a plain state dict, as Boson's
