"""Build random-weight checkpoints of the real architectures, in the real on-disk layout, offline.

    python scripts/build_tiny_models.py --volume .volume            # every tiny model
    python scripts/build_tiny_models.py --volume .volume musicgen   # one of them

Each model is written to <volume>/<handler>/<MODEL_ID> with `save_pretrained`, exactly where the
handler resolves MODEL_ID, so tests and the demo load it through the production code. The `bench`
size is large enough for generation to take seconds, for scripts/benchmark.py.
"""

from __future__ import annotations

import argparse
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    EncodecConfig,
    EncodecFeatureExtractor,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenMelodyConfig,
    MusicgenMelodyDecoderConfig,
    MusicgenMelodyFeatureExtractor,
    MusicgenMelodyForConditionalGeneration,
    MusicgenMelodyProcessor,
    MusicgenProcessor,
    T5Config,
    T5TokenizerFast,
)

# MusicGen's real audio side: EnCodec at 32 kHz, hop 640 (50 frames/s), 4 codebooks of 2048 entries
# at 2.2 kbps. Only the widths and depths shrink.
_ENCODEC_32K = {
    "sampling_rate": 32000,
    "upsampling_ratios": [8, 5, 4, 4],
    "target_bandwidths": [2.2],
    "codebook_size": 2048,
}
_SIZES = {
    "tiny": {"text": (32, 2, 4), "decoder": (32, 2, 4), "encodec": (16, 4)},
    "bench": {"text": (256, 4, 4), "decoder": (512, 12, 8), "encodec": (32, 16)},
}


def _t5_tokenizer() -> T5TokenizerFast:
    """A real T5 (Unigram) tokenizer built from an in-memory vocabulary, no download."""
    pieces = ["▁" + word for word in ("lo", "fi", "beat", "piano", "drum", "bass", "with", "and", "bpm")]
    symbols = list(string.ascii_lowercase + string.digits + ",.-'!?") + ["▁"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -1.0 - i * 0.01) for i, p in enumerate(pieces)]
    vocab += [(s, -5.0 - i * 0.01) for i, s in enumerate(symbols)]
    return T5TokenizerFast(vocab=vocab, extra_ids=0)


def _musicgen_parts(size: str, tokenizer: T5TokenizerFast, decoder_class=MusicgenDecoderConfig) -> dict:
    (t_dim, t_layers, t_heads), (d_dim, d_layers, d_heads), (e_hidden, e_filters) = _SIZES[size].values()
    text = T5Config(
        vocab_size=len(tokenizer),
        d_model=t_dim,
        d_kv=t_dim // t_heads,
        d_ff=2 * t_dim,
        num_layers=t_layers,
        num_heads=t_heads,
    )
    audio = EncodecConfig(
        **_ENCODEC_32K,
        audio_channels=1,
        hidden_size=e_hidden,
        num_filters=e_filters,
        codebook_dim=e_hidden,
        num_residual_layers=1,
        num_lstm_layers=1,
    )
    decoder = decoder_class(
        vocab_size=2048,
        hidden_size=d_dim,
        num_hidden_layers=d_layers,
        num_attention_heads=d_heads,
        ffn_dim=4 * d_dim,
        num_codebooks=4,
        audio_channels=1,
        max_position_embeddings=2048,
        pad_token_id=2048,
        bos_token_id=2048,
        decoder_start_token_id=2048,
    )
    return {"text_encoder": text, "audio_encoder": audio, "decoder": decoder}


def _randomize_codebooks(encodec: torch.nn.Module) -> None:
    """EnCodec initialises its codebooks to zeros (a real checkpoint holds trained ones): without this,
    every code would decode to the same waveform and no test could tell one output from another."""
    for layer in encodec.quantizer.layers:
        layer.codebook.embed.normal_()
        layer.codebook.embed_avg.copy_(layer.codebook.embed)


def _published_generation_config(model) -> None:
    """The published generation_config.json: sampling on, guidance 3, pad/start = codebook size."""
    model.generation_config.update(
        do_sample=True,
        guidance_scale=3.0,
        max_length=1500,
        top_k=250,
        pad_token_id=2048,
        decoder_start_token_id=2048,
        bos_token_id=2048,
    )


def build_musicgen(target: Path, size: str) -> None:
    tokenizer = _t5_tokenizer()
    model = MusicgenForConditionalGeneration(MusicgenConfig(**_musicgen_parts(size, tokenizer)))
    _randomize_codebooks(model.audio_encoder)
    _published_generation_config(model)
    processor = MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=32000, padding_value=0.0),
        tokenizer=tokenizer,
    )
    model.save_pretrained(target)
    processor.save_pretrained(target)


def build_musicgen_melody(target: Path, size: str) -> None:
    """musicgen-melody: the decoder is also conditioned on a 12-bin chromagram of the melody audio
    (the published feature extractor settings: n_fft 16384, hop 4096, 30 s chunks)."""
    tokenizer = _t5_tokenizer()
    config = MusicgenMelodyConfig(**_musicgen_parts(size, tokenizer, MusicgenMelodyDecoderConfig), num_chroma=12)
    model = MusicgenMelodyForConditionalGeneration(config)
    _randomize_codebooks(model.audio_encoder)
    _published_generation_config(model)
    processor = MusicgenMelodyProcessor(feature_extractor=MusicgenMelodyFeatureExtractor(), tokenizer=tokenizer)
    model.save_pretrained(target)
    processor.save_pretrained(target)


@dataclass(frozen=True)
class TinyModel:
    handler: str  # folder under the volume root
    model_id: str  # the MODEL_ID a worker is started with
    builder: Callable[[Path, str], None]


BUILDERS: dict[str, TinyModel] = {
    "musicgen": TinyModel("musicgen", "tiny-random/musicgen", build_musicgen),
    "musicgen-melody": TinyModel("musicgen", "tiny-random/musicgen-melody", build_musicgen_melody),
}


def build(volume: Path, names: list[str], size: str) -> list[Path]:
    torch.manual_seed(0)
    built = []
    for name in names:
        entry = BUILDERS[name]
        model_id = entry.model_id if size == "tiny" else entry.model_id.replace("tiny-random", f"{size}-random")
        target = volume / entry.handler / model_id
        entry.builder(target, size)
        built.append(target)
        print(f"built {name} ({size}) at {target}")
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", metavar="MODEL", help=f"some of {', '.join(BUILDERS)}; default: all")
    parser.add_argument("--volume", type=Path, default=Path(".volume"), help="volume root to write into")
    parser.add_argument("--size", choices=list(_SIZES), default="tiny")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(BUILDERS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    build(args.volume, args.models or list(BUILDERS), args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
