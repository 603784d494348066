"""The per-job sampler: the distribution transformers would sample, drawn from each job's own generator."""

from __future__ import annotations

import pytest
import torch

from handlers.musicgen.adapter import MusicGen
from handlers.musicgen.sampling import PerJobSampler, Sampling
from handlers.musicgen.schema import MusicGenRequest

pytestmark = pytest.mark.unit

LOGITS = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
DRAWS = 20_000


def _frequencies(sampling: Sampling, logits: torch.Tensor = LOGITS, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    sampler = PerJobSampler(sampling, [(DRAWS, generator)])
    scores = logits.expand(DRAWS, -1)
    if sampling.guidance_scale > 1:  # conditional half, then the unconditional half
        scores = torch.cat([scores, torch.zeros_like(scores)])
    choice = sampler(torch.zeros(1), scores)[:DRAWS]
    assert (choice.max(-1).values == 0).all()  # exactly one token left for generate's greedy step
    return torch.bincount(choice.argmax(-1), minlength=logits.shape[-1]) / DRAWS


def test_it_samples_softmax_with_temperature_and_guidance():
    assert torch.allclose(_frequencies(Sampling(1.0, 1.0, 0, 0.0)), LOGITS.softmax(-1)[0], atol=0.015)
    assert torch.allclose(_frequencies(Sampling(1.0, 0.5, 0, 0.0)), (LOGITS / 0.5).softmax(-1)[0], atol=0.015)
    # Guidance 3 against an unconditional half of zeros: logits 0 + 3 * (cond - 0).
    assert torch.allclose(_frequencies(Sampling(3.0, 1.0, 0, 0.0)), (3 * LOGITS).softmax(-1)[0], atol=0.015)


def test_top_k_and_top_p_keep_only_the_likely_tokens():
    top_two = _frequencies(Sampling(1.0, 1.0, 2, 0.0))
    assert top_two[2:].sum() == 0 and torch.allclose(top_two[:2], LOGITS[0, :2].softmax(-1), atol=0.015)
    # softmax(LOGITS) = .53 .20 .12 .07 .03: top_p 0.6 keeps the first two (the second crosses 0.6).
    nucleus = _frequencies(Sampling(1.0, 1.0, 0, 0.6))
    assert nucleus[2:].sum() == 0 and nucleus[1] > 0


def test_each_job_draws_from_its_own_generator():
    sampling = Sampling(1.0, 1.0, 0, 0.0)
    logits = torch.randn(6, 32)

    def sample(rows: list[tuple[int, int]]) -> torch.Tensor:
        sampler = PerJobSampler(sampling, [(count, torch.Generator().manual_seed(seed)) for count, seed in rows])
        return sampler(torch.zeros(1), logits[: sum(count for count, _ in rows)]).argmax(-1)

    together = sample([(2, 7), (4, 8)])
    alone_first = sample([(2, 7)])
    assert torch.equal(together[:2], alone_first)  # the second job's rows change nothing of the first's


def test_the_batch_key_groups_text_requests_of_one_length_and_sampling():
    def key(**fields):
        return MusicGen.batch_key(MusicGenRequest(prompt="x", **fields))

    assert key(seed=1) == key(seed=2, format="mp3") != key(duration=9.0)
    assert key(temperature=0.7) != key()
    assert MusicGen.batch_key(MusicGenRequest(prompt="x", melody_audio="https://example.com/a.wav")) is None
