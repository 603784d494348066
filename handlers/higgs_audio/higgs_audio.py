"""Higgs Audio V2 (Boson AI) through transformers' native classes: TTS with voice cloning and scene control.

The prompt follows the model's chat format: a system turn with the scene description, one
user/assistant pair per reference voice (its transcript, then its audio codes), earlier chunks of a
long transcript the same way (so each chunk keeps the voices of the previous ones), then the text to
speak and an open assistant audio turn.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, ValidationInfo, model_validator
from transformers import (
    AutoTokenizer,
    DacFeatureExtractor,
    GenerationConfig,
    HiggsAudioV2ForConditionalGeneration,
    HiggsAudioV2Processor,
    HiggsAudioV2TokenizerModel,
)

from shared import audio as audio_codec
from shared.adapter import ModelAdapter, Prediction, Progress
from shared.audio import Audio
from shared.errors import InputError, ModelFilesError
from shared.schemas import JobRequest, check_audio_source
from shared.settings import Settings
from shared.volume import resolve_model_dir

SAMPLE_RATE = 24000
MAX_REFERENCES = 4
# Chunks of a long transcript kept in the prompt as context for the next one: enough to hold the
# voices steady, bounded so the prompt does not grow with the transcript.
CONTEXT_CHUNKS = 2
_SPEAKER_TAG = re.compile(r"\[SPEAKER(\d+)\]")
_PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_AUDIO_PREFIXES = ("https://", "http://", "s3://", "data:")


def _is_preset(reference: str) -> bool:
    return not reference.startswith(_AUDIO_PREFIXES) and len(reference) <= 64


def _check_reference(value: str, info: ValidationInfo) -> str:
    if _is_preset(value):
        if not _PRESET_NAME.match(value):
            raise ValueError(
                "must be a voice preset name (letters, digits, '_' and '-'; no paths) "
                "or reference audio as an https:// URL, an s3:// URI or base64"
            )
        return value
    return check_audio_source(value, info)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


VoiceReference = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_check_reference)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]


class HiggsAudioRequest(JobRequest):
    transcript: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000)] = Field(
        description="Text to speak; [SPEAKER0], [SPEAKER1], ... tags mark the turns of a dialogue."
    )
    ref_audio: Annotated[list[VoiceReference], BeforeValidator(_as_list)] | None = Field(
        None,
        max_length=MAX_REFERENCES,
        description="Voice to clone: a preset name on the volume (e.g. 'belinda') or reference audio "
        "(https, s3:// or base64); a list gives one voice per speaker, [SPEAKER0] first.",
    )
    ref_text: Annotated[list[Text], BeforeValidator(_as_list)] | None = Field(
        None, description="Transcript of each uploaded ref_audio entry (optional; presets carry their own)."
    )
    scene_prompt: Text | None = Field(None, description="Scene description steering tone and recording conditions.")
    temperature: float = Field(1.0, gt=0.0, le=2.0, description="Sampling temperature.")
    top_k: int = Field(50, ge=1, le=1024, description="Sample among the k most likely codes.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(2048, ge=16, le=8192, description="Audio frames (25 per second) per chunk, at most.")
    chunk_method: Literal["speaker", "word"] | None = Field(
        None, description="Split a long transcript by speaker turns or by words; none: one piece."
    )
    chunk_max_word_num: int = Field(200, ge=1, le=2000, description="Words per chunk with chunk_method 'word'.")
    chunk_max_num_turns: int = Field(1, ge=1, le=20, description="Speaker turns per chunk with 'speaker'.")
    ras_win_len: int = Field(7, ge=0, le=64, description="Repetition-aware sampling window in frames (0 = off).")
    ras_win_max_num_repeat: int = Field(2, ge=1, le=16, description="Repeats allowed inside the RAS window.")

    @model_validator(mode="after")
    def _reference_rules(self) -> HiggsAudioRequest:
        references = self.ref_audio or []
        if self.ref_text is not None:
            if not references:
                raise ValueError("ref_text: given without ref_audio")
            if len(self.ref_text) != len(references):
                raise ValueError(f"ref_text: {len(self.ref_text)} transcripts for {len(references)} ref_audio entries")
            for index, (reference, text) in enumerate(zip(references, self.ref_text, strict=True)):
                if text and _is_preset(reference):
                    raise ValueError(
                        f"ref_text.{index}: voice preset {reference!r} has its own transcript; "
                        "give ref_text only for uploaded audio"
                    )
        if len(references) > 1:
            speakers = {int(number) for number in _SPEAKER_TAG.findall(self.transcript)}
            if not speakers:
                raise ValueError(
                    f"ref_audio: {len(references)} voices need [SPEAKER0]..[SPEAKER{len(references) - 1}] "
                    "tags in transcript"
                )
            unknown = sorted(speaker for speaker in speakers if speaker >= len(references))
            if unknown:
                raise ValueError(f"transcript: [SPEAKER{unknown[0]}] has no ref_audio entry ({len(references)} given)")
        return self

    def input_audio(self) -> dict[str, str]:
        return {
            f"ref_audio.{index}": reference
            for index, reference in enumerate(self.ref_audio or [])
            if not _is_preset(reference)
        }


def split_transcript(request: HiggsAudioRequest) -> list[str]:
    """The pieces generated one after another: speaker turns, word runs, or the whole transcript."""
    text = request.transcript
    if request.chunk_method == "speaker":
        starts = [match.start() for match in _SPEAKER_TAG.finditer(text)]
        if not starts:
            return [text]
        turns = ([text[: starts[0]].strip()] if starts[0] > 0 else []) + [
            text[start:end].strip() for start, end in zip(starts, [*starts[1:], len(text)], strict=True)
        ]
        turns = [turn for turn in turns if turn]
        size = request.chunk_max_num_turns
        return ["\n".join(turns[i : i + size]) for i in range(0, len(turns), size)]
    if request.chunk_method == "word":
        chunks: list[str] = []
        for paragraph in (p for p in re.split(r"\n\s*\n", text) if p.strip()):
            words = paragraph.split()
            size = request.chunk_max_word_num
            chunks += [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        return chunks
    return [text]


def _turn(role: str, content: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"


_AUDIO_TURN = _turn("assistant", "<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|>")


def build_prompt(scene_prompt: str | None, context: list[tuple[str, Audio]], text: str) -> str:
    """The chat-format prompt: system (scene), then (text, audio) context pairs, then the open audio turn."""
    system = "Generate audio following instruction."
    if scene_prompt:
        system += f"\n\n<|scene_desc_start|>\n{scene_prompt}\n<|scene_desc_end|>"
    prompt = "<|begin_of_text|>" + _turn("system", system)
    for context_text, _ in context:
        prompt += _turn("user", context_text) + _AUDIO_TURN
    return prompt + _turn("user", text) + "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>"


def _flag_from_env(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw not in ("", "0", "1", "true", "false"):
        raise ModelFilesError(f"environment variable {name} must be 0/1/true/false, got {raw!r}")
    return raw in ("1", "true")


class HiggsAudio(ModelAdapter[HiggsAudioRequest]):
    name = "higgs_audio"
    default_model_id = "bosonai/higgs-audio-v2-generation-3B-base"
    request_model = HiggsAudioRequest
    required_files = ("config.json", "tokenizer.json", "tokenizer_config.json")
    gpu_dtype: ClassVar[torch.dtype] = torch.bfloat16
    input_channels: ClassVar[int] = 1
    tokenizer_files = ("config.json", "preprocessor_config.json")

    def setup(self) -> None:
        settings = self.settings
        org = self.model_id.split("/", 1)[0]
        tokenizer_id = os.environ.get("HIGGS_AUDIO_TOKENIZER_ID", "").strip() or f"{org}/higgs-audio-v2-tokenizer"
        tokenizer_settings = Settings(volume_root=settings.volume_root)  # MODEL_DIR names the LM, not this one
        tokenizer_dir = resolve_model_dir(self.name, tokenizer_id, tokenizer_settings, self.tokenizer_files)
        self.voices_dir = Path(
            os.environ.get("HIGGS_AUDIO_VOICES_DIR", "").strip() or settings.volume_root / self.name / "voices"
        )
        self.static_cache = _flag_from_env("HIGGS_AUDIO_STATIC_CACHE")
        self.model = (
            HiggsAudioV2ForConditionalGeneration.from_pretrained(self.model_dir, dtype=self.dtype)
            .to(self.device)
            .eval()
        )
        # The codec stays in float32: it is small, and its decoder is sensitive to reduced precision.
        audio_tokenizer = HiggsAudioV2TokenizerModel.from_pretrained(tokenizer_dir).to(self.device).eval()
        # The shipped processor_config.json names the tokenizer by hub id: build it from the local folders.
        self.processor = HiggsAudioV2Processor(
            feature_extractor=DacFeatureExtractor.from_pretrained(tokenizer_dir),
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
        return sorted(path.stem for path in self.voices_dir.glob("*.wav") if _PRESET_NAME.match(path.stem))

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

    def _references(self, request: HiggsAudioRequest, audio_inputs: dict[str, Audio]) -> list[tuple[str, Audio]]:
        references = []
        multi_speaker = len(request.ref_audio or []) > 1
        for index, reference in enumerate(request.ref_audio or []):
            label = f"ref_audio.{index}"
            if _is_preset(reference):
                text, audio = self._preset(reference, label)
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

    def _generate(self, prompt: str, audios: list[Audio], config: GenerationConfig) -> tuple[np.ndarray, int]:
        inputs = self.processor(
            text=prompt,
            audio=[audio.samples[:, 0] for audio in audios] or None,
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            codes = self.model.generate(**inputs, generation_config=config)
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
        return processor.revert_delay_pattern(generated).clip(0, processor.audio_stream_bos_id - 1)

    def predict(self, request: HiggsAudioRequest, audio_inputs: dict[str, Audio], progress: Progress) -> Prediction:
        references = self._references(request, audio_inputs)
        chunks = split_transcript(request)
        config = self._generation_config(request)
        generated: list[tuple[str, Audio]] = []
        pieces, chunk_details = [], []
        for index, chunk in enumerate(chunks):
            context = references + generated[-CONTEXT_CHUNKS:]
            waveform, frames = self._generate(
                build_prompt(request.scene_prompt, context, chunk), [audio for _, audio in context], config
            )
            audio = Audio(waveform[:, None], SAMPLE_RATE)
            if frames:
                generated.append((chunk, audio))
            pieces.append(waveform)
            chunk_details.append({"text": chunk, "frames": frames, "duration_seconds": round(audio.duration, 4)})
            progress("generating", (index + 1) / len(chunks))
        joined = Audio(np.concatenate(pieces)[:, None], SAMPLE_RATE)
        details = {
            "chunks": chunk_details,
            "voices": [
                {"speaker": index, "preset": reference if _is_preset(reference) else None}
                for index, reference in enumerate(request.ref_audio or [])
            ],
            "static_cache": self.static_cache,
        }
        return Prediction([joined], details)

    @classmethod
    def client_fields(cls, request: HiggsAudioRequest, result: dict[str, Any]) -> dict[str, Any]:
        output = result["outputs"][0]
        return {
            "success": True,
            "audio_url": output.get("url") or output.get("path"),
            "duration_seconds": output["duration_seconds"],
            "sample_rate": output["sample_rate"],
            "text_output": request.transcript,
            "metadata": {
                "model_used": result["model"]["id"],
                "voice_clone": bool(request.ref_audio),
                "generation_parameters": {
                    name: result["parameters"][name]
                    for name in (
                        "temperature",
                        "top_k",
                        "top_p",
                        "max_new_tokens",
                        "seed",
                        "scene_prompt",
                        "chunk_method",
                        "chunk_max_word_num",
                        "chunk_max_num_turns",
                        "ras_win_len",
                        "ras_win_max_num_repeat",
                    )
                },
            },
        }
