"""HeartMuLa through heartlib: lyrics and style tags to a whole song, stereo 48 kHz.

Two models take turns: HeartMuLa (a Llama 3.2 backbone and a depth decoder from torchtune) writes 8
codebooks per 80 ms frame; HeartCodec (flow matching over 29.76 s windows, then a scalar codec) turns the
frames into audio. The worker runs heartlib's steps itself (prompt, frame by frame generation, then
`detokenize`) so that it can report progress, stop between frames and free the KV caches, and its default
residency, `sequential`, keeps both models in CPU memory with one of them on the GPU at a time.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from heartlib.heartcodec.modeling_heartcodec import HeartCodec
from heartlib.heartmula.modeling_heartmula import HeartMuLa
from heartlib.pipelines.music_generation import HeartMuLaGenConfig
from loguru import logger
from tokenizers import Tokenizer
from torchtune.models.llama3_1._position_embeddings import Llama3ScaledRoPE
from torchtune.modules import delete_kv_caches

from handlers.heartmula import flavors
from handlers.heartmula.catalog import CATALOG, CODEC_FOLDER, MULA_FOLDER
from handlers.heartmula.config import HeartMuLaWorkerConfig
from handlers.heartmula.schema import FRAME_MS, SAMPLE_RATE, HeartMuLaRequest
from shared.adapter import JobContext, ModelAdapter, Prediction
from shared.audio import Audio
from shared.errors import InputError
from shared.parts import Part, Parts, home_device
from shared.schemas import AudioLabel
from shared.settings import Residency
from shared.torch_runtime import RUNTIME

flavors.register()

CODEBOOKS = 8
_PROMPT_COLUMNS = CODEBOOKS + 1  # a prompt position holds 8 audio codes and one text token (the last column)
_MUQ_WIDTH = 512  # the reference-audio embedding slot; heartlib leaves it empty (zeros) for text prompts
# HeartCodec.detokenize's defaults: 29.76 s windows of 372 frames, each new window 320 frames on, 10 steps.
_WINDOW_FRAMES, _HOP_FRAMES, _FLOW_STEPS = 372, 320, 10


def decode_windows(frames: int) -> int:
    """The windows `detokenize` decodes for `frames` frames (it pads the frames to whole windows)."""
    overlap = _WINDOW_FRAMES - _HOP_FRAMES
    padded = max(frames, _WINDOW_FRAMES)
    if (padded - 2 * overlap) % _HOP_FRAMES:
        padded = math.ceil((padded - overlap) / _HOP_FRAMES) * _HOP_FRAMES + overlap
    return len(range(0, padded - _HOP_FRAMES + 1, _HOP_FRAMES))


class SongPrompt(NamedTuple):
    rows: torch.Tensor  # (positions, 9): one text token per row, in the last column
    reference_slot: int  # the row after the tags, left for a reference-audio embedding


def song_prompt(tokenizer: Tokenizer, ids: HeartMuLaGenConfig, tags: str, lyrics: str) -> SongPrompt:
    """The prompt heartlib builds: tags, an empty reference-audio slot, lyrics.

    heartlib's `preprocess` would read `tags` or `lyrics` as a file when they name one on disk: the worker
    builds the same rows from the strings alone."""

    def text(value: str) -> list[int]:
        tokens = tokenizer.encode(value.lower()).ids
        bos = [ids.text_bos_id] if tokens[:1] != [ids.text_bos_id] else []
        eos = [ids.text_eos_id] if tokens[-1:] != [ids.text_eos_id] else []
        return bos + tokens + eos

    tag_text = tags.lower()
    tag_text = tag_text if tag_text.startswith("<tag>") else f"<tag>{tag_text}"
    tag_text = tag_text if tag_text.endswith("</tag>") else f"{tag_text}</tag>"
    tag_tokens = text(tag_text)
    column = tag_tokens + [ids.empty_id] + text(lyrics)
    rows = torch.zeros(len(column), _PROMPT_COLUMNS, dtype=torch.long)
    rows[:, -1] = torch.tensor(column)
    return SongPrompt(rows, len(tag_tokens))


def free_kv_caches(mula: HeartMuLa) -> None:
    """Delete the KV caches and causal masks one job set up (the backbone's is ~1 GB per batch row on 3B)."""
    layers = 0
    for stack in (mula.backbone, mula.decoder):
        if stack.caches_are_setup():
            layers += len(stack.layers)
            delete_kv_caches(stack)
    for mask in ("backbone_causal_mask", "decoder_causal_mask"):
        if mask in mula._buffers:
            delattr(mula, mask)
    if layers:
        logger.info("deleted the KV caches of {} attention layers", layers)


class HeartMuLaSong(ModelAdapter[HeartMuLaRequest, HeartMuLaWorkerConfig]):
    catalog = CATALOG
    request_model = HeartMuLaRequest
    config_model = HeartMuLaWorkerConfig
    gpu_dtype: ClassVar[str] = "bfloat16"  # HeartMuLa's; HeartCodec always runs in float32 (bf16 degrades it)
    default_residency: ClassVar[Residency] = Residency.SEQUENTIAL
    residencies: ClassVar[tuple[Residency, ...]] = (Residency.KEEP, Residency.UNLOAD, Residency.SEQUENTIAL)

    @classmethod
    def check_request(cls, request: HeartMuLaRequest, config: HeartMuLaWorkerConfig) -> None:
        if request.max_duration_ms > config.max_duration_ms:
            raise InputError(
                f"max_duration_ms: {request.max_duration_ms} is over this endpoint's cap "
                f"(HEARTMULA_MAX_DURATION_MS={config.max_duration_ms})"
            )

    def setup(self) -> None:
        cpu = torch.device("cpu")
        home = home_device(self.residency, self.device, cpu)
        # Loaded, then moved: device_map would need accelerate, which this image leaves out.
        mula = HeartMuLa.from_pretrained(self.model_dir / MULA_FOLDER, dtype=self.dtype).to(home).eval()
        # transformers 5 materialises the weights but not the RoPE caches torchtune builds in __init__.
        for module in mula.modules():
            if isinstance(module, Llama3ScaledRoPE):
                module.rope_init()
        codec = HeartCodec.from_pretrained(self.model_dir / CODEC_FOLDER, dtype=torch.float32).to(home).eval()
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.ids = HeartMuLaGenConfig.from_file(str(self.model_dir / "gen_config.json"))
        self.context = mula.backbone.max_seq_len
        self.parts = Parts(
            {"heartmula": Part(mula, lambda: free_kv_caches(mula)), "heartcodec": Part(codec)},
            self.device,
            cpu,
            self.residency,
            RUNTIME,
        )

    def predict(self, request: HeartMuLaRequest, audio_inputs: dict[AudioLabel, Audio], job: JobContext) -> Prediction:
        prompt = song_prompt(self.tokenizer, self.ids, request.tags, request.lyrics)
        planned = request.max_duration_ms // FRAME_MS
        room = self.context - len(prompt.rows)
        if planned > room:
            raise InputError(
                f"max_duration_ms: {request.max_duration_ms} ms needs {planned} frames, but the lyrics and tags "
                f"take {len(prompt.rows)} of the model's {self.context} positions: at most {room * FRAME_MS} ms remain"
            )
        with self.parts.job(job.phases) as phase:
            with phase("generate", "heartmula") as mula:
                frames, ended_by = self._generate(mula, prompt, planned, request, job)
            with phase("decode", "heartcodec") as codec:
                waveform = self._decode(codec, frames, job)
        audio = Audio(np.ascontiguousarray(waveform.float().numpy().T), SAMPLE_RATE)
        return Prediction(
            [audio],
            {
                "frames": frames.shape[1],
                "planned_frames": planned,
                "ended_by": ended_by,
                "prompt_positions": len(prompt.rows),
                "decode_windows": decode_windows(frames.shape[1]),
                "residency": self.residency.value,
            },
        )

    @torch.inference_mode()
    def _generate(
        self, mula: HeartMuLa, prompt: SongPrompt, planned: int, request: HeartMuLaRequest, job: JobContext
    ) -> tuple[torch.Tensor, str]:
        """Frames (8, n) of codes, and why generation ended: "eos" or "max_duration"."""
        guided = request.cfg_scale != 1.0
        rows = 2 if guided else 1  # guidance runs a conditional and an unconditional row
        device = next(mula.parameters()).device
        dtype = next(mula.parameters()).dtype
        tokens = prompt.rows.to(device).unsqueeze(0).repeat(rows, 1, 1)
        mask = torch.zeros_like(tokens, dtype=torch.bool)
        mask[..., -1] = True  # the prompt is text only
        positions = torch.arange(len(prompt.rows), device=device).unsqueeze(0).repeat(rows, 1)
        sampling = {"temperature": request.temperature, "topk": request.topk, "cfg_scale": request.cfg_scale}
        mula.setup_caches(rows)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
        frames: list[torch.Tensor] = []
        ended_by = "max_duration"
        with autocast:
            frame = mula.generate_frame(
                tokens=tokens,
                tokens_mask=mask,
                input_pos=positions,
                continuous_segments=torch.zeros(rows, _MUQ_WIDTH, dtype=dtype, device=device),
                starts=[prompt.reference_slot] * rows,
                **sampling,
            )
            for index in range(planned):
                if torch.any(frame[0] >= self.ids.audio_eos_id):
                    ended_by = "eos"
                    break
                frames.append(frame[0])
                job.progress("generating", (index + 1) / planned)
                if index + 1 == planned:
                    break
                job.stop.step()  # a cancelled job ends here, between two frames
                codes = torch.full((rows, 1, _PROMPT_COLUMNS), self.ids.empty_id, dtype=torch.long, device=device)
                codes[:, 0, :-1] = frame
                codes_mask = torch.ones_like(codes, dtype=torch.bool)
                codes_mask[..., -1] = False  # an audio frame carries no text
                frame = mula.generate_frame(
                    tokens=codes, tokens_mask=codes_mask, input_pos=positions[:, -1:] + index + 1, **sampling
                )
        if not frames:
            raise InputError("the model ended the song before its first frame; try another seed or other tags")
        return torch.stack(frames, dim=1).cpu(), ended_by

    def _decode(self, codec: HeartCodec, frames: torch.Tensor, job: JobContext) -> torch.Tensor:
        """Stereo (2, samples) float audio from `detokenize`, with progress and a stop check at each flow step
        and before each window's waveform (the scalar codec's first layer runs once per window)."""
        steps = decode_windows(frames.shape[1]) * (_FLOW_STEPS + 1)
        done = 0

        def each_step(_module: torch.nn.Module, _args: tuple) -> None:
            nonlocal done
            job.stop.step()
            job.progress("decoding", done / steps)
            done += 1

        hooks = [
            codec.flow_matching.estimator.register_forward_pre_hook(each_step),
            codec.scalar_model.decoder[0].register_forward_pre_hook(each_step),
        ]
        try:
            waveform = codec.detokenize(frames.to(codec.device))
        finally:
            for hook in hooks:
                hook.remove()
        job.progress("decoding", 1.0)
        return waveform.cpu()
