"""VoxCPM2 / VoxCPM 1.5 (OpenBMB) through the `voxcpm` package: zero-shot and cloned TTS, streamed.

A voice prompt comes one of three ways: prompt audio with its transcript, precomputed prompt latents
with their transcript (made by the `encode_latents` task, so a voice is encoded once and reused), or
none (zero-shot). All three become the library's prompt cache, so every mode runs the same code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
import voxcpm as voxcpm_library
from loguru import logger
from pydantic import AfterValidator, Field, StringConstraints, ValidationInfo, model_validator
from safetensors import safe_open
from voxcpm.model.voxcpm import LoRAConfig

from shared import audio as audio_codec
from shared.adapter import ModelAdapter, Prediction, Progress
from shared.audio import Audio
from shared.errors import InputError, ModelFilesError
from shared.fetch import fetch_artifact
from shared.schemas import AudioSource, JobRequest, decode_base64_audio
from shared.volume import populate_command

ARCHITECTURES = {"voxcpm2": "VoxCPM2", "voxcpm": "VoxCPM 1.5"}
LORA_MAX_BYTES = 2 * 1024**3
_CONTAINERS = {"wav": "WAV", "mp3": "MP3", "flac": "FLAC", "ogg": "OGG"}


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
    prompt_latents: Annotated[str, AfterValidator(_check_latents)] | None = Field(
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
        found = audio_codec.container_of(decode_base64_audio(source))
        if found != _CONTAINERS[self.prompt_audio_format]:
            raise ValueError(
                f"prompt_audio_format: declared {self.prompt_audio_format!r} but the audio is {found or 'not audio'}"
            )
        return self


def _verify_complete(model: torch.nn.Module, folder: Path, populate: str) -> None:
    """The library loads weights non-strictly: refuse a checkpoint that leaves any weight unloaded."""
    stored: set[str] = set()
    for file_name, prefix in (("model.safetensors", ""), ("audiovae.safetensors", "audio_vae.")):
        with safe_open(folder / file_name, framework="pt") as weights:
            stored.update(prefix + key for key in weights.keys())  # noqa: SIM118 (safe_open is not a dict)
    missing = sorted(name for name, _ in model.named_parameters() if "lora_" not in name and name not in stored)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelFilesError(
            f"model folder {folder} is incomplete: {len(missing)} weight(s) missing from its safetensors "
            f"({shown}); re-populate it with: {populate}"
        )


class VoxCPM(ModelAdapter[VoxCPMRequest]):
    name = "voxcpm"
    default_model_id = "openbmb/VoxCPM2"
    request_model = VoxCPMRequest
    required_files = ("config.json", "audiovae.safetensors", "tokenizer.json", "tokenizer_config.json")
    gpu_dtype: ClassVar[torch.dtype] = torch.bfloat16
    streams: ClassVar[bool] = True

    def setup(self) -> None:
        config = json.loads((self.model_dir / "config.json").read_text())
        self.architecture = config.get("architecture", "voxcpm").lower()
        if self.architecture not in ARCHITECTURES:
            raise ModelFilesError(f"{self.model_dir}/config.json: unknown architecture {self.architecture!r}")
        lora_path, lora_config = self._lora()
        self.tts = voxcpm_library.VoxCPM(
            str(self.model_dir),
            zipenhancer_model_path=None,
            enable_denoiser=False,
            optimize=self.device.type == "cuda" and os.environ.get("VOXCPM_COMPILE", "0") == "1",
            device=self.device.type,
            lora_config=lora_config,
        )
        self.model = self.tts.tts_model
        _verify_complete(
            self.model, self.model_dir, populate_command(self.name, self.model_id, self.settings.volume_root)
        )
        self.lora_id = None
        if lora_path is not None:
            _, skipped = self.tts.load_lora(str(lora_path))
            if skipped:
                raise ModelFilesError(
                    f"VOXCPM_LORA_URI: {len(skipped)} LoRA tensor(s) match no layer of this model "
                    f"(e.g. {skipped[0]}); is it a LoRA for {ARCHITECTURES[self.architecture]}?"
                )
            self.lora_id = lora_path.parent.name

    def _lora(self) -> tuple[Path | None, LoRAConfig | None]:
        """The LoRA named by VOXCPM_LORA_URI, fetched once into a local cache and checked by SHA-256."""
        uri = os.environ.get("VOXCPM_LORA_URI", "").strip()
        if not uri:
            return None, None
        lora_id = os.environ.get("VOXCPM_LORA_ID", "").strip() or hashlib.sha256(uri.encode()).hexdigest()[:16]
        expected = os.environ.get("VOXCPM_LORA_SHA256", "").strip().lower() or None
        cache = Path(os.environ.get("VOXCPM_LORA_CACHE_DIR", "").strip() or "/tmp/voxcpm-lora") / lora_id
        path = cache / "lora_weights.safetensors"
        if not (path.is_file() and (expected is None or _sha256(path.read_bytes()) == expected)):
            try:
                data = fetch_artifact(uri, "VOXCPM_LORA_URI", self.settings, LORA_MAX_BYTES)
            except InputError as exc:
                raise ModelFilesError(str(exc)) from None
            found = _sha256(data)
            if expected is not None and found != expected:
                raise ModelFilesError(
                    f"VOXCPM_LORA_SHA256: the LoRA at {uri} has sha256 {found}, expected {expected}; not used"
                )
            cache.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return path, _lora_config(path)

    @property
    def input_sample_rate(self) -> int:
        return int(self.model.audio_vae.sample_rate)

    def _encode(self, audio: Audio) -> torch.Tensor:
        """Prompt audio -> latents (frames, patch_size, feat_dim), left-padded to whole patches."""
        samples = torch.from_numpy(np.ascontiguousarray(audio.samples[:, 0])).unsqueeze(0)
        patch_samples = self.model.patch_size * self.model.chunk_size
        samples = torch.nn.functional.pad(samples, ((-samples.shape[1]) % patch_samples, 0))
        vae = self.model.audio_vae
        with torch.inference_mode():
            latents = vae.encode(samples.to(self.device), vae.sample_rate).cpu()
        return latents.view(vae.latent_dim, -1, self.model.patch_size).permute(1, 2, 0).float()

    def _latents_from_request(self, encoded: str) -> torch.Tensor:
        values = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
        patch, dim = self.model.patch_size, self.model.audio_vae.latent_dim
        if values.size % (patch * dim):
            raise InputError(
                f"prompt_latents: {values.size} values is not a whole number of frames of "
                f"patch_size {patch} x feat_dim {dim} (this model's; encode_latents makes them)"
            )
        return torch.from_numpy(values.copy()).view(-1, patch, dim)

    def model_info(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "model": ARCHITECTURES[self.architecture],
            "sample_rate": int(self.model.sample_rate),
            "channels": 1,
            "lora": self.lora_id,
        }

    def predict(self, request: VoxCPMRequest, audio_inputs: dict[str, Audio], progress: Progress) -> Prediction:
        if request.denoise:
            raise InputError("denoise: this worker has no denoiser (ZipEnhancer is not installed in the image)")
        if request.task == "encode_latents":
            latents = self._encode(audio_inputs["prompt_audio"])
            return Prediction([], {"model_info": self.model_info(), "latents": _latents_result(latents, self)})
        cache = None
        if "prompt_audio" in audio_inputs:
            cache = {"prompt_text": request.prompt_text, "audio_feat": self._encode(audio_inputs["prompt_audio"])}
        elif request.prompt_latents is not None:
            cache = {
                "prompt_text": request.prompt_text,
                "audio_feat": self._latents_from_request(request.prompt_latents),
            }
        if cache is not None:
            cache["mode"] = "continuation"
        text = " ".join(request.target_text.split())
        if request.normalize:
            text = self._normalizer().normalize(text)
        streaming = request.stream and progress.streaming
        arguments = {
            "target_text": text,
            "prompt_cache": cache,
            "max_len": request.max_len,
            "inference_timesteps": request.inference_timesteps,
            "cfg_value": request.cfg_value,
            "retry_badcase": request.retry_badcase and not streaming,  # the library cannot retry a stream
        }
        rate = int(self.model.sample_rate)
        if streaming:
            pieces = []
            for chunk, _, _ in self.model.generate_with_prompt_cache_streaming(**arguments):
                piece = Audio(chunk.reshape(-1, 1).float().numpy(), rate)
                progress.chunk(piece, request.stream_format)
                pieces.append(piece.samples)
            samples = np.concatenate(pieces) if pieces else np.zeros((0, 1), np.float32)
        else:
            waveform, _, _ = self.model.generate_with_prompt_cache(**arguments)
            samples = waveform.reshape(-1, 1).float().numpy()
        return Prediction([Audio(samples, rate)], {"model_info": self.model_info()})

    def _normalizer(self):
        if not hasattr(self, "_text_normalizer"):
            from voxcpm.utils.text_normalize import TextNormalizer

            self._text_normalizer = TextNormalizer()
        return self._text_normalizer

    @classmethod
    def client_fields(cls, request: VoxCPMRequest, result: dict[str, Any]) -> dict[str, Any]:
        return {"model_info": result["details"]["model_info"]}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _lora_config(path: Path) -> LoRAConfig:
    """Rank from the tensors, targets from their names; alpha from VOXCPM_LORA_ALPHA (default 2 x rank)."""
    with safe_open(path, framework="pt") as weights:
        names = list(weights.keys())
        ranks = {weights.get_slice(name).get_shape()[0] for name in names if name.endswith("lora_A")}
    if len(ranks) != 1:
        raise ModelFilesError(f"VOXCPM_LORA_URI: {path.name} holds no single-rank lora_A tensors")
    rank = ranks.pop()
    alpha = int(os.environ.get("VOXCPM_LORA_ALPHA", "").strip() or 2 * rank)
    logger.info("LoRA: rank {}, alpha {}, {} tensors", rank, alpha, len(names))
    return LoRAConfig(
        enable_lm=any(name.startswith(("base_lm.", "residual_lm.")) for name in names),
        enable_dit=any(name.startswith("feat_decoder.") for name in names),
        enable_proj=any(name.split(".", 1)[0].endswith("_proj") for name in names),
        r=rank,
        alpha=alpha,
    )


def _latents_result(latents: torch.Tensor, adapter: VoxCPM) -> dict[str, Any]:
    frames, patch, dim = latents.shape
    return {
        "base64": base64.b64encode(latents.numpy().astype("<f4").tobytes()).decode(),
        "dtype": "float32",
        "frames": frames,
        "patch_size": patch,
        "feat_dim": dim,
        "sample_rate": adapter.input_sample_rate,
        "architecture": adapter.architecture,
    }
