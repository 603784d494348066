"""VoxCPM2 / VoxCPM 1.5 (OpenBMB) through the `voxcpm` package: zero-shot and cloned TTS, streamed.

A voice prompt comes one of three ways: prompt audio with its transcript, precomputed prompt latents
with their transcript (made by the `encode_latents` task, so a voice is encoded once and reused), or
none (zero-shot). All three become the library's prompt cache, so every mode runs the same code.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import voxcpm
from loguru import logger
from safetensors import safe_open
from voxcpm.model.voxcpm import LoRAConfig

from handlers.voxcpm.catalog import CATALOG
from handlers.voxcpm.config import VoxCPMConfig
from handlers.voxcpm.schema import VoxCPMRequest
from shared.adapter import Attachment, JobContext, ModelAdapter, Prediction
from shared.audio import Audio
from shared.errors import InputError, ModelFilesError
from shared.fetch import fetch_verified
from shared.progress import StreamFormat
from shared.schemas import AudioLabel
from shared.settings import Settings
from shared.volume import populate_command

ARCHITECTURES = {"voxcpm2": "VoxCPM2", "voxcpm": "VoxCPM 1.5"}
LORA_MAX_BYTES = 2 * 1024**3
PROMPT_AUDIO = AudioLabel("prompt_audio")


def fetch_lora(config: VoxCPMConfig, settings: Settings) -> Path | None:
    """The LoRA named by VOXCPM_LORA_URI, fetched once into a local cache and checked by SHA-256."""
    if config.lora_uri is None:
        return None
    cache_file = config.lora_cache_dir / config.lora_name() / "lora_weights.safetensors"
    return fetch_verified(config.lora_uri, "VOXCPM_LORA_URI", config.lora_sha256, cache_file, settings, LORA_MAX_BYTES)


def _lora_config(path: Path, alpha: int | None) -> LoRAConfig:
    """Rank from the tensors, targets from their names; alpha from VOXCPM_LORA_ALPHA (default 2 x rank)."""
    with safe_open(path, framework="pt") as weights:
        names = list(weights.keys())
        ranks = {weights.get_slice(name).get_shape()[0] for name in names if name.endswith("lora_A")}
    if len(ranks) != 1:
        raise ModelFilesError(f"VOXCPM_LORA_URI: {path.name} holds no single-rank lora_A tensors")
    rank = ranks.pop()
    alpha = alpha or 2 * rank
    logger.info("LoRA: rank {}, alpha {}, {} tensors", rank, alpha, len(names))
    return LoRAConfig(
        enable_lm=any(name.startswith(("base_lm.", "residual_lm.")) for name in names),
        enable_dit=any(name.startswith("feat_decoder.") for name in names),
        enable_proj=any(name.split(".", 1)[0].endswith("_proj") for name in names),
        r=rank,
        alpha=alpha,
    )


# The files the library reads, in its order of preference: safetensors, else the pickled form openbmb ships
# (audiovae.pth beside model.safetensors in VoxCPM2), loaded with torch.load(weights_only=True) as it does.
_WEIGHT_FILES = (
    ("", ("model.safetensors", "pytorch_model.bin")),
    ("audio_vae.", ("audiovae.safetensors", "audiovae.pth")),
)


def _stored_names(path: Path) -> set[str]:
    if path.suffix == ".safetensors":
        with safe_open(path, framework="pt") as weights:
            return set(weights.keys())  # noqa: SIM118 (safe_open is not a dict)
    checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    return set(checkpoint.get("state_dict", checkpoint))


def _verify_complete(model: torch.nn.Module, folder: Path, populate: str) -> None:
    """The library loads weights non-strictly: refuse a checkpoint that leaves any weight unloaded."""
    stored: set[str] = set()
    for prefix, names in _WEIGHT_FILES:
        path = next(folder / name for name in names if (folder / name).is_file())
        stored.update(prefix + name for name in _stored_names(path))
    missing = sorted(name for name, _ in model.named_parameters() if "lora_" not in name and name not in stored)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelFilesError(
            f"model folder {folder} is incomplete: {len(missing)} weight(s) missing from its weight files "
            f"({shown}); re-populate it with: {populate}"
        )


class VoxCPM(ModelAdapter[VoxCPMRequest, VoxCPMConfig]):
    catalog = CATALOG
    request_model = VoxCPMRequest
    config_model = VoxCPMConfig
    gpu_dtype: ClassVar[str] = "bfloat16"
    streams: ClassVar[bool] = True
    max_input_seconds: ClassVar[float] = 300.0  # a voice prompt; its latents stay a few MB

    @classmethod
    def prepare(cls, model_dir: Path, config: VoxCPMConfig, settings: Settings) -> None:
        fetch_lora(config, settings)  # a wrong checksum or an unreachable LoRA is known before any job

    def setup(self) -> None:
        config = json.loads((self.model_dir / "config.json").read_text())
        self.architecture = config.get("architecture", "voxcpm").lower()
        if self.architecture not in ARCHITECTURES:
            raise ModelFilesError(f"{self.model_dir}/config.json: unknown architecture {self.architecture!r}")
        lora_path = fetch_lora(self.config, self.settings)
        self.tts = voxcpm.VoxCPM(
            str(self.model_dir),
            zipenhancer_model_path=None,
            enable_denoiser=False,
            optimize=self.device.type == "cuda" and self.config.compile,
            device=self.device.type,
            lora_config=_lora_config(lora_path, self.config.lora_alpha) if lora_path else None,
        )
        self.model = self.tts.tts_model
        _verify_complete(
            self.model, self.model_dir, populate_command(CATALOG.worker, self.model_id, self.settings.volume_root)
        )
        self.lora_id = None
        if lora_path is not None:
            _, skipped = self.tts.load_lora(str(lora_path))
            if skipped:
                raise ModelFilesError(
                    f"VOXCPM_LORA_URI: {len(skipped)} LoRA tensor(s) match no layer of this model "
                    f"(e.g. {skipped[0]}); is it a LoRA for {ARCHITECTURES[self.architecture]}?"
                )
            self.lora_id = self.config.lora_name()

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

    def predict(self, request: VoxCPMRequest, audio_inputs: dict[AudioLabel, Audio], job: JobContext) -> Prediction:
        if request.denoise:
            raise InputError("denoise: this worker has no denoiser (ZipEnhancer is not installed in the image)")
        if request.stream and job.stream is None:
            raise InputError(
                "stream: this endpoint serves plain results; streaming needs STREAM_AUDIO=1 on the endpoint "
                "(a streaming deployment, read through /stream)"
            )
        if request.task == "encode_latents":
            latents = self._encode(audio_inputs[PROMPT_AUDIO])
            info = self.model_info()
            attachments = {"latents": _latents_attachment(latents, self)}
            return Prediction([], {"model_info": info}, {"model_info": info}, attachments)
        cache = None
        if PROMPT_AUDIO in audio_inputs:
            cache = {"prompt_text": request.prompt_text, "audio_feat": self._encode(audio_inputs[PROMPT_AUDIO])}
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
        self._check_length(text, request, cache)
        streaming = request.stream
        arguments = {
            "target_text": text,
            "prompt_cache": cache,
            "max_len": request.max_len,
            "inference_timesteps": request.inference_timesteps,
            "cfg_value": request.cfg_value,
            "retry_badcase": request.retry_badcase and not streaming,  # the library cannot retry a stream
        }
        rate = int(self.model.sample_rate)
        # The diffusion decoder runs once per patch: the step where a cancelled job stops.
        step_hook = job.stop.before_each_call(self.model.feat_decoder)
        try:
            samples = self._generate(arguments, streaming, request.stream_format, job, rate)
        finally:
            step_hook.remove()
        info = self.model_info()
        return Prediction([Audio(samples, rate)], {"model_info": info, "text_spoken": text}, {"model_info": info})

    def _generate(
        self, arguments: dict[str, Any], streaming: bool, stream_format: StreamFormat, job: JobContext, rate: int
    ) -> np.ndarray:
        if streaming:
            pieces = []
            for chunk, _, _ in self.model.generate_with_prompt_cache_streaming(**arguments):
                piece = Audio(chunk.reshape(-1, 1).float().numpy(), rate)
                job.stream.write(piece, stream_format)
                pieces.append(piece.samples)
            return np.concatenate(pieces) if pieces else np.zeros((0, 1), np.float32)
        waveform, _, _ = self.model.generate_with_prompt_cache(**arguments)
        return waveform.reshape(-1, 1).float().numpy()

    def _check_length(self, text: str, request: VoxCPMRequest, cache: dict[str, Any] | None) -> None:
        """Before generating: text the tokenizer keeps nothing of, or a job longer than the model's positions."""
        tokens = len(self.model.text_tokenizer(text))
        if tokens == 0:
            raise InputError("target_text: nothing in it that this model can speak (it tokenizes to nothing)")
        # The library generates at most 6 patches per text token (+10), and no more than max_len.
        patches = min(tokens * 6 + 10, request.max_len)
        prompt = len(self.model.text_tokenizer(request.prompt_text)) if cache else 0
        prompt += cache["audio_feat"].shape[0] if cache else 0
        needed, available = prompt + tokens + 1 + patches, int(self.model.config.max_length)
        if needed > available:
            raise InputError(
                f"target_text: {tokens} text tokens and up to {patches} audio patches (voice prompt: {prompt}) need "
                f"{needed} positions; this model holds {available}: shorten target_text or the prompt, or lower max_len"
            )

    def _normalizer(self):
        if not hasattr(self, "_text_normalizer"):
            from voxcpm.utils.text_normalize import TextNormalizer

            self._text_normalizer = TextNormalizer()
        return self._text_normalizer


def _latents_attachment(latents: torch.Tensor, adapter: VoxCPM) -> Attachment:
    """Prompt latents as little-endian float32 (frames, patch_size, feat_dim), with what reading them needs."""
    frames, patch, dim = latents.shape
    fields = {
        "dtype": "float32",
        "frames": frames,
        "patch_size": patch,
        "feat_dim": dim,
        "sample_rate": adapter.input_sample_rate,
        "architecture": adapter.architecture,
    }
    return Attachment(latents.numpy().astype("<f4").tobytes(), fields, extension="f32")
