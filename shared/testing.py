"""What a worker folder declares for tests and benchmarks: its tiny models, its contract, its baseline.

Each handlers/<model>/fixtures.py holds `TINY_MODELS` (random-weight models of the real architecture,
saved in the real layout) and `CONTRACT` (what the shared contract suite runs); baseline.py holds
`BASELINE` (the bare library calls the benchmark compares the worker with).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIZES = ("tiny", "bench")  # bench: large enough for generation to take seconds


@dataclass(frozen=True)
class TinyModel:
    model_id: str  # the MODEL_ID a worker is started with (tiny-random/...)
    build: Callable[[Path, str], None]  # (target folder, size) -> writes the checkpoint there
    # False: a variant the worker's CONTRACT job does not fit (e.g. another phoneme set); its own tests cover it.
    serves_contract: bool = True
    # The published checkpoints (ORG/NAME) of this architecture: the tests rebuild this model in each one's
    # file layout (handlers/<worker>/tests/published/) and serve it as it is.
    published: tuple[str, ...] = ()

    def model_id_for(self, size: str) -> str:
        return self.model_id.replace("tiny-random", f"{size}-random")


@dataclass(frozen=True)
class ContractCase:
    """What the contract suite every worker runs needs to know about this one."""

    job_input: dict[str, Any]  # a quick job that makes audio (the suite adds seed and format)
    output_count: int  # outputs that job makes
    locked: dict[str, Any]  # LOCKED_PARAMETERS to try: the result must report these values
    bad_value: tuple[str, Any, str]  # a field, a value it refuses, and a fragment of the error
    bad_variable: tuple[str, str, str]  # one of the model's own variables, a bad value, a fragment of the error
    long_job_input: dict[str, Any]  # a job of many steps (seconds on a CPU), for cancellation
    fuzz_locks: dict[str, Any]  # LOCKED_PARAMETERS that keep any generated request cheap (the fuzz test)
    extra_env: dict[str, str] = field(default_factory=dict)  # variables the worker needs for these jobs


@dataclass(frozen=True)
class Baseline:
    """The bare library calls the worker's job is measured against (scripts/benchmark.py)."""

    job_input: dict[str, Any]  # the same work, as a request to the worker
    load: Callable[[Path], Any]  # model folder -> whatever `run` needs (loaded once, reused)
    run: Callable[[Any, int], Any]  # (loaded, seed) -> waveform whose last axis is samples


def refusal(request_model: type, raw: Any, input_audio_max_bytes: int = 20 * 1024 * 1024) -> str:
    """The error a worker answers for this input, checked without a model; fails if the input is accepted."""
    from shared.errors import InputError
    from shared.schemas import parse_request

    try:
        parse_request(request_model, raw, input_audio_max_bytes)
    except InputError as exc:
        return str(exc)
    raise AssertionError(f"{request_model.__name__} accepted {raw!r}")


def byte_level_bpe_tokenizer(
    special_tokens: tuple[str, ...], bos: str | None, eos: str, pad: str, ids: dict[str, int] | None = None
) -> Any:
    """A byte-level BPE tokenizer (Llama-3's and Qwen's kind) over the 256 byte symbols, built offline. `ids`: the
    special tokens at these ids (a published tokenizer's numbering), not after the bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab | (ids or {}), merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    if ids:
        backend.add_special_tokens(list(ids))  # already in the vocabulary: they keep their ids
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = bos, eos, pad
    return tokenizer


@contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    """Modules built inside are created in `dtype` (a full-size random model in bfloat16: half the memory)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
