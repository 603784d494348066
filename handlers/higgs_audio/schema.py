"""The Higgs Audio V2 request: every input once, with type, default, bounds and description (no torch here)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, ValidationInfo, model_validator

from shared.schemas import AudioInputHint, AudioLabel, JobRequest, check_audio_source

SAMPLE_RATE = 24000
MAX_REFERENCES = 4
# Chunks of a long transcript kept in the prompt as context for the next one: enough to hold the
# voices steady, bounded so the prompt does not grow with the transcript.
CONTEXT_CHUNKS = 2
SPEAKER_TAG = re.compile(r"\[SPEAKER(\d+)\]")
PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_AUDIO_PREFIXES = ("https://", "http://", "s3://", "data:")


def is_preset(reference: str) -> bool:
    return not reference.startswith(_AUDIO_PREFIXES) and len(reference) <= 64


def _check_reference(value: str, info: ValidationInfo) -> str:
    if is_preset(value):
        if not PRESET_NAME.match(value):
            raise ValueError(
                "must be a voice preset name (letters, digits, '_' and '-'; no paths) "
                "or reference audio as an https:// URL, an s3:// URI or base64"
            )
        return value
    return check_audio_source(value, info)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# A preset name or audio: the form offers a file picker; the handler fetches only the audio entries.
VoiceReference = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(_check_reference), AudioInputHint()
]
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
                if text and is_preset(reference):
                    raise ValueError(
                        f"ref_text.{index}: voice preset {reference!r} has its own transcript; "
                        "give ref_text only for uploaded audio"
                    )
        if len(references) > 1:
            speakers = {int(number) for number in SPEAKER_TAG.findall(self.transcript)}
            if not speakers:
                raise ValueError(
                    f"ref_audio: {len(references)} voices need [SPEAKER0]..[SPEAKER{len(references) - 1}] "
                    "tags in transcript"
                )
            unknown = sorted(speaker for speaker in speakers if speaker >= len(references))
            if unknown:
                raise ValueError(f"transcript: [SPEAKER{unknown[0]}] has no ref_audio entry ({len(references)} given)")
        return self

    def input_audio(self) -> dict[AudioLabel, str]:
        return {
            AudioLabel("ref_audio", index): reference
            for index, reference in enumerate(self.ref_audio or [])
            if not is_preset(reference)
        }
