"""MusicGen's token sampling with one random generator per job, so a job's audio does not depend on the
jobs it is batched with: the same seed gives the same song alone or in any batch.

transformers samples every row from torch's global generator. This processor does guidance, temperature,
top-k and top-p itself and draws each job's noise from that job's generator (Gumbel-max sampling), then
hands `generate` (run greedy) a choice it can only take. It runs before MusicGen's own guidance processor
(which `generate` appends after custom processors), so it sees the conditional and unconditional halves
and returns the choice in both, which that processor's guidance leaves unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LogitsProcessor


@dataclass(frozen=True)
class Sampling:
    guidance_scale: float
    temperature: float
    top_k: int  # 0: no limit
    top_p: float  # 0: off


class PerJobSampler(LogitsProcessor):
    def __init__(self, sampling: Sampling, rows: list[tuple[int, torch.Generator]]) -> None:
        self._sampling = sampling
        self._rows = rows  # (rows, generator) per job, in batch order: rows = prompts x codebooks
        self.guidance_scale = sampling.guidance_scale

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sampling = self._sampling
        guided = sampling.guidance_scale > 1
        logits = scores.float()
        if guided:  # the first half is conditioned on the text, the second not
            conditional, unconditional = logits.chunk(2)
            logits = unconditional + (conditional - unconditional) * sampling.guidance_scale
        logits = logits / sampling.temperature
        if 0 < sampling.top_k < logits.shape[-1]:
            kth = logits.topk(sampling.top_k).values[:, -1:]
            logits = logits.masked_fill(logits < kth, -torch.inf)
        if sampling.top_p > 0:
            ordered, order = logits.sort(descending=True)
            probabilities = ordered.softmax(-1)
            # Drop a token once the more likely ones already hold top_p of the mass (the first always stays).
            drop = (probabilities.cumsum(-1) - probabilities) > sampling.top_p
            logits = logits.masked_fill(drop.scatter(1, order, drop), -torch.inf)
        noise = torch.cat(
            [
                torch.empty((rows, logits.shape[-1]), device=logits.device).exponential_(generator=generator)
                for rows, generator in self._rows
            ]
        )
        tokens = (logits - noise.log()).argmax(-1, keepdim=True)  # Gumbel-max: a sample of softmax(logits)
        choice = torch.full(
            (tokens.shape[0], scores.shape[-1]), torch.finfo(scores.dtype).min, dtype=scores.dtype, device=scores.device
        ).scatter_(1, tokens, 0.0)
        return torch.cat([choice, choice]) if guided else choice
