"""Higgs Audio V2 (Boson AI) through transformers' native classes: TTS with voice cloning and scene control.

Long transcripts are generated chunk by chunk (prompt.py), each prompted with the reference voices and
the last chunks generated, and joined into one file.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    DacFeatureExtractor,
    GenerationConfig,
    HiggsAudioV2ForConditionalGeneration,
    HiggsAudioV2Processor,
    HiggsAudioV2TokenizerModel,
)

from handlers.higgs_audio.catalog import CATALOG, TOKENIZER_FILES, TOKENIZER_NAME
from handlers.higgs_audio.config import HiggsAudioConfig
from handlers.higgs_audio.prompt import build_prompt, split_transcript
from handlers.higgs_audio.schema import PRESET_NAME, SAMPLE_RATE, HiggsAudioRequest, is_preset
from shared import audio as audio_codec
from shared.adapter import JobContext, ModelAdapter, Prediction
from shared.audio import Audio
from shared.errors import InputError
from shared.schemas import AudioLabel
from shared.settings import Settings
from shared.stop import StopSignal
from shared.volume import resolve_model_dir

FRAME_RATE = 25  # audio frames per second of the tokenizer (24 kHz / hop 960)
MAX_OUTPUT_SECONDS = 3600
# Chunks of a long transcript kept in the prompt as context for the next one: enough to hold the
# voices steady, bounded so the prompt does not grow with the transcript.
CONTEXT_CHUNKS = 2
# The generation settings clients of the reference API get back under metadata.generation_parameters.
_REPORTED_PARAMETERS = (
    "temperature",
    "top_k",
    "top_p",
    "max_new_tokens",
    "scene_prompt",
    "chunk_method",
    "chunk_max_word_num",
    "chunk_max_num_turns",
    "ras_win_len",
    "ras_win_max_num_repeat",
)


def tokenizer_dir(model_id: str, config: HiggsAudioConfig, volume_root: Path) -> Path:
    """The audio tokenizer's folder: HIGGS_AUDIO_TOKENIZER_ID, else beside the LM (MODEL_DIR names the LM only)."""
    tokenizer_id = config.tokenizer_id or f"{model_id.split('/', 1)[0]}/{TOKENIZER_NAME}"
    # A tokenizer in Boson's own format (config.json + model.pth) is refused with the command that converts it.
    return resolve_model_dir(
        CATALOG.worker,
        tokenizer_id,
        volume_root,
        TOKENIZER_FILES,
        formats=CATALOG.formats,
        other_names=CATALOG.names(tokenizer_id)[1:],
    )


class HiggsAudio(ModelAdapter[HiggsAudioRequest, HiggsAudioConfig]):
    catalog = CATALOG
    request_model = HiggsAudioRequest
    config_model = HiggsAudioConfig
    gpu_dtype: ClassVar[str] = "bfloat16"
    input_channels: ClassVar[int] = 1
    max_input_seconds: ClassVar[float] = 120.0  # a reference voice
    first_output_fields = {
        "audio_url": ("url", "path"),
        "duration_seconds": ("duration_seconds",),
        "sample_rate": ("sample_rate",),
    }

    @classmethod
    def check_request(cls, request: HiggsAudioRequest, config: HiggsAudioConfig) -> None:
        chunks = len(split_transcript(request))
        longest = chunks * request.max_new_tokens / FRAME_RATE
        if longest > MAX_OUTPUT_SECONDS:
            raise InputError(
                f"max_new_tokens/chunk_method: {chunks} chunk(s) of up to {request.max_new_tokens} frames could make "
                f"{longest:.0f} s of audio, over the {MAX_OUTPUT_SECONDS} s cap; lower max_new_tokens or use "
                "larger chunks"
            )

    @classmethod
    def prepare(cls, model_dir: Path, config: HiggsAudioConfig, settings: Settings) -> None:
        tokenizer_dir(settings.model_id or CATALOG.default_model_id, config, settings.volume_root)

    def setup(self) -> None:
        audio_tokenizer_dir = tokenizer_dir(self.model_id, self.config, self.settings.volume_root)
        self.voices_dir = self.config.voices_dir or self.settings.volume_root / CATALOG.worker / "voices"
        self.static_cache = self.config.static_cache
        self.model = (
            HiggsAudioV2ForConditionalGeneration.from_pretrained(self.model_dir, dtype=self.dtype)
            .to(self.device)
            .eval()
        )
        # The codec stays in float32: it is small, and its decoder is sensitive to reduced precision.
        audio_tokenizer = HiggsAudioV2TokenizerModel.from_pretrained(audio_tokenizer_dir).to(self.device).eval()
        # The shipped processor_config.json names the tokenizer by hub id: build it from the local folders.
        self.processor = HiggsAudioV2Processor(
            feature_extractor=DacFeatureExtractor.from_pretrained(audio_tokenizer_dir),
            tokenizer=AutoTokenizer.from_pretrained(self.model_dir),
            audio_tokenizer=audio_tokenizer,
        )
        self._presets: dict[str, tuple[str, Audio]] = {}

    @property
    def input_sample_rate(self) -> int:
        return SAMPLE_RATE

    def available_presets(self) -> list[str]:
        if not self.voices_dir.is_dir():
            return []
        return sorted(path.stem for path in self.voices_dir.glob("*.wav") if PRESET_NAME.match(path.stem))

    def _preset(self, name: str, label: str) -> tuple[str, Audio]:
        if name not in self._presets:
            wav = self.voices_dir / f"{name}.wav"
            if not wav.is_file():
                available = ", ".join(self.available_presets()) or f"none (folder {self.voices_dir})"
                raise InputError(f"{label}: unknown voice preset {name!r}; available: {available}")
            transcript_file = wav.with_suffix(".txt")
            transcript = transcript_file.read_text().strip() if transcript_file.is_file() else ""
            audio = audio_codec.decode(wav.read_bytes(), label).resampled(SAMPLE_RATE).with_channels(1)
            self._presets[name] = (transcript, audio)
        return self._presets[name]

    def _references(self, request: HiggsAudioRequest, audio_inputs: dict[AudioLabel, Audio]) -> list[tuple[str, Audio]]:
        references = []
        multi_speaker = len(request.ref_audio or []) > 1
        for index, reference in enumerate(request.ref_audio or []):
            label = AudioLabel("ref_audio", index)
            if is_preset(reference):
                text, audio = self._preset(reference, str(label))
            else:
                text, audio = (request.ref_text or [""] * (index + 1))[index], audio_inputs[label]
            references.append((f"[SPEAKER{index}] {text}" if multi_speaker else text, audio))
        return references

    def _generation_config(self, request: HiggsAudioRequest) -> GenerationConfig:
        config = GenerationConfig.from_dict(self.model.generation_config.to_dict())
        config.update(
            do_sample=True,
            temperature=request.temperature,
            top_k=request.top_k,
            top_p=request.top_p,
            max_new_tokens=request.max_new_tokens,
            cache_implementation="static" if self.static_cache else None,
        )
        # Read by Higgs' sampler as plain attributes; absent means repetition-aware sampling is off.
        config.ras_win_len = request.ras_win_len or None
        config.ras_win_max_num_repeat = request.ras_win_max_num_repeat
        return config

    def _generate(
        self, prompt: str, audios: list[Audio], config: GenerationConfig, stop: StopSignal
    ) -> tuple[np.ndarray, int]:
        inputs = self.processor(
            text=prompt,
            audio=[audio.samples[:, 0] for audio in audios] or None,
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            codes = self.model.generate(**inputs, generation_config=config, stopping_criteria=stop.stopping_criteria())
            # Rows after the last all-bos row are this turn's frames (delayed), up to the stream end.
            frames = self._frames(codes[0])
            if frames.shape[0] == 0:
                return np.zeros(0, dtype=np.float32), 0
            waveform = self.processor.audio_tokenizer.decode(frames.transpose(0, 1).unsqueeze(0)).audio_values
        return waveform.reshape(-1).float().cpu().numpy(), int(frames.shape[0])

    def _frames(self, codes: torch.Tensor) -> torch.Tensor:
        """(steps, codebooks) generated codes -> (frames, codebooks) with the delay pattern undone."""
        processor = self.processor
        start = (codes == processor.audio_stream_bos_id).all(-1).nonzero()[-1, 0].item() + 1
        generated = codes[start:]
        ended = (generated == processor.audio_stream_eos_id).all(-1).nonzero()
        generated = generated[: ended[0, 0].item()] if len(ended) else generated
        delay = generated.shape[1] - 1
        if generated.shape[0] <= delay:
            return generated[:0]
        frames = processor.revert_delay_pattern(generated)
        # The frame where the first codebook ends its stream is the end marker, not audio (Boson's engine drops it;
        # clipped, its end code would decode as 40 ms of noise): frames stop before the first stream-end code.
        ends = (frames == processor.audio_stream_eos_id).any(-1).nonzero()
        frames = frames[: ends[0, 0].item()] if len(ends) else frames
        return frames.clip(0, processor.audio_stream_bos_id - 1)

    def predict(self, request: HiggsAudioRequest, audio_inputs: dict[AudioLabel, Audio], job: JobContext) -> Prediction:
        references = self._references(request, audio_inputs)
        chunks = split_transcript(request)
        config = self._generation_config(request)
        generated: list[tuple[str, Audio]] = []
        pieces, chunk_details = [], []
        for index, chunk in enumerate(chunks):
            context = references + generated[-CONTEXT_CHUNKS:]
            waveform, frames = self._generate(
                build_prompt(request.scene_prompt, [text for text, _ in context], chunk),
                [audio for _, audio in context],
                config,
                job.stop,
            )
            audio = Audio(waveform[:, None], SAMPLE_RATE)
            if frames:
                generated.append((chunk, audio))
            pieces.append(waveform)
            chunk_details.append({"text": chunk, "frames": frames, "duration_seconds": round(audio.duration, 4)})
            job.progress("generating", (index + 1) / len(chunks))
        joined = Audio(np.concatenate(pieces)[:, None], SAMPLE_RATE)
        details = {
            "chunks": chunk_details,
            "voices": [
                {"speaker": index, "preset": reference if is_preset(reference) else None}
                for index, reference in enumerate(request.ref_audio or [])
            ],
            "static_cache": self.static_cache,
        }
        parameters = request.model_dump(include=set(_REPORTED_PARAMETERS)) | {"seed": job.seed}
        response_fields = {
            "success": True,
            "text_output": request.transcript,
            "metadata": {
                "model_used": self.model_id,
                "voice_clone": bool(request.ref_audio),
                "generation_parameters": parameters,
            },
        }
        return Prediction([joined], details, response_fields)
