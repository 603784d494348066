"""The VoxCPM request: every input once, with type, default, bounds and description (no torch here)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, ValidationInfo, model_validator

from shared.formats import AUDIO_FORMATS
from shared.schemas import AudioSource, BulkyInput, JobRequest, decode_base64_audio


def _check_latents(value: str, info: ValidationInfo) -> str:
    max_bytes = (info.context or {}).get("input_audio_max_bytes")
    if max_bytes is not None and len(value) * 3 // 4 > max_bytes:
        raise ValueError(f"about {len(value) * 3 // 4} bytes, over the {max_bytes}-byte cap")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 of little-endian float32 values") from None
    if not data or len(data) % 4:
        raise ValueError(f"{len(data)} bytes is not a whole number of float32 values")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]


class VoxCPMRequest(JobRequest):
    task: Literal["tts", "encode_latents"] = Field(
        "tts", description="tts: speak target_text; encode_latents: turn prompt_audio into reusable latents."
    )
    target_text: Text | None = Field(None, description="Text to speak (task tts).")
    prompt_audio: AudioSource | None = Field(None, description="Voice prompt audio: base64, https or s3:// URI.")
    prompt_audio_format: Literal["wav", "mp3", "flac", "ogg"] | None = Field(
        None, description="Container of base64 prompt_audio, checked against the bytes (decoding detects it)."
    )
    prompt_latents: Annotated[str, AfterValidator(_check_latents), BulkyInput()] | None = Field(
        None, description="Precomputed prompt latents from encode_latents: base64 little-endian float32."
    )
    prompt_text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)] | None = Field(
        None, description="What the voice prompt (audio or latents) says."
    )
    cfg_value: float = Field(2.0, ge=0.1, le=10.0, description="Classifier-free guidance of the diffusion decoder.")
    inference_timesteps: int = Field(10, ge=1, le=100, description="Diffusion steps per audio patch.")
    normalize: bool = Field(False, description="Normalize numbers, dates and symbols in the text first.")
    denoise: bool = Field(False, description="Denoise the prompt audio first (needs the denoiser on the volume).")
    max_len: int = Field(4096, ge=1, le=8192, description="Most audio patches to generate.")
    retry_badcase: bool = Field(True, description="Regenerate when the audio is far too long for the text.")
    stream: bool = Field(False, description="Stream audio chunks through /stream while generating.")
    stream_format: Literal["pcm_s16le", "mp3"] = Field(
        "pcm_s16le", description="Format of streamed chunks: raw 16-bit PCM (exact) or self-contained MP3."
    )

    def output_count(self) -> int:
        return 0 if self.task == "encode_latents" else 1

    @model_validator(mode="after")
    def _prompt_rules(self) -> VoxCPMRequest:
        if self.prompt_audio is not None and self.prompt_latents is not None:
            raise ValueError("prompt_audio and prompt_latents: give one voice prompt, not both")
        if self.prompt_audio_format is not None and self.prompt_audio is None:
            raise ValueError("prompt_audio_format: given without prompt_audio")
        if self.task == "encode_latents":
            extra = [name for name in ("target_text", "prompt_latents", "prompt_text") if getattr(self, name)]
            if self.prompt_audio is None or extra or self.stream:
                raise ValueError(
                    "task 'encode_latents': takes prompt_audio only"
                    + (f" (drop {', '.join(extra + ['stream'] * self.stream)})" if extra or self.stream else "")
                )
            return self._check_container()
        if self.target_text is None:
            raise ValueError("target_text: required for task 'tts'")
        has_prompt = self.prompt_audio is not None or self.prompt_latents is not None
        if has_prompt and self.prompt_text is None:
            raise ValueError("prompt_text: required with prompt_audio or prompt_latents")
        if self.prompt_text is not None and not has_prompt:
            raise ValueError("prompt_text: given without prompt_audio or prompt_latents")
        if self.denoise and self.prompt_audio is None:
            raise ValueError("denoise: applies to prompt_audio, which is not given")
        return self._check_container()

    def _check_container(self) -> VoxCPMRequest:
        source = self.prompt_audio
        if self.prompt_audio_format is None or source is None or source.startswith(("https://", "http://", "s3://")):
            return self
        from shared import audio as audio_codec  # numpy and libsndfile: only when there are bytes to check

        found = audio_codec.container_of(decode_base64_audio(source))
        if found != AUDIO_FORMATS[self.prompt_audio_format].container:
            raise ValueError(
                f"prompt_audio_format: declared {self.prompt_audio_format!r} but the audio is {found or 'not audio'}"
            )
        return self
