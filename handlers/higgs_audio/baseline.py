"""Higgs Audio V2 without the worker: processor, `generate`, decode, on the same prompt."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    DacFeatureExtractor,
    HiggsAudioV2ForConditionalGeneration,
    HiggsAudioV2Processor,
    HiggsAudioV2TokenizerModel,
)

from handlers.higgs_audio.catalog import TOKENIZER_NAME
from handlers.higgs_audio.prompt import build_prompt
from shared.testing import Baseline

TEXT, SCENE, TOKENS = "The sun rises in the east and sets in the west.", "A quiet room.", 200


def load(folder: Path):
    tokenizer_folder = folder.parent / TOKENIZER_NAME
    model = HiggsAudioV2ForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    processor = HiggsAudioV2Processor(
        feature_extractor=DacFeatureExtractor.from_pretrained(tokenizer_folder),
        tokenizer=AutoTokenizer.from_pretrained(folder),
        audio_tokenizer=HiggsAudioV2TokenizerModel.from_pretrained(tokenizer_folder).eval(),
    )
    return model, processor


def run(loaded, seed: int) -> torch.Tensor:
    model, processor = loaded
    inputs = processor(text=build_prompt(SCENE, [], TEXT), return_tensors="pt")
    torch.manual_seed(seed)
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=True, temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=TOKENS)
    config.ras_win_len, config.ras_win_max_num_repeat = 7, 2  # Higgs' sampler reads these attributes
    with torch.inference_mode():
        return processor.decode(model.generate(**inputs, generation_config=config))


BASELINE = Baseline({"transcript": TEXT, "scene_prompt": SCENE, "max_new_tokens": TOKENS}, load, run)
