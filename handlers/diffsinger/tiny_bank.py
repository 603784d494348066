"""Random-weight DiffSinger voicebanks in OpenUtau's layout, for the DiffSinger worker's tests and benchmarks.

`build_bank` writes a current (DiffSinger v2.5-style) bank: a continuous-acceleration acoustic model that takes every
optional input (languages, energy, breathiness, gender, velocity, spk_embed, depth, steps), the dsdur, dspitch and
dsvariance stages, two speakers and its own dsvocoder/. `build_legacy_bank` writes a v2.3-style bank: `depth` and
`speedup` integers, a text phoneme table, one speaker, only dsdur.

The weights are random, so the audio is a buzz shaped by the inputs. What is real is everything a runner reads: the
folder layout, the keys of dsconfig.yaml, vocoder.yaml, dsdict.yaml and character.yaml, the phoneme and language
tables, the .emb files, and each ONNX graph's input and output names, dtypes and ranks. The graphs are exported the way
DiffSinger's exporters do it (the TorchScript exporter; the sampling loop scripted into an ONNX Loop that `steps`
drives), and every output depends on every input, so a test can tell when a runner feeds something wrong. Like
DiffSinger's diffusion and rectified-flow exports, every sampler draws its noise inside the graph (RandomNormalLike),
so the seed shows in the audio.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

# The dictionary, un-prefixed: the main (multi-language) bank spells these phonemes `en/<ph>` in its tables and
# dsdict.yaml files, the legacy bank as they are here. SP and AP are not listed (OpenUtau adds them as vowels).
WORDS: dict[str, list[str]] = {
    "hello": ["hh", "ah", "l", "ow"],
    "world": ["w", "er", "l", "d"],
    "la": ["l", "aa"],
    "sing": ["s", "ih", "ng"],
    "a": ["ah"],
    "song": ["s", "ao", "ng"],
    "happy": ["hh", "ae", "p", "iy"],
    "day": ["d", "ey"],
    "to": ["t", "uw"],
    "you": ["y", "uw"],
    "the": ["dh", "ah"],
    "light": ["l", "ay", "t"],
}
VOWELS = frozenset({"aa", "ae", "ah", "ao", "ay", "er", "ey", "ih", "iy", "ow", "uw"})
SPEAKERS = ("tiny.alto", "tiny.tenor")
LANGUAGES = ("en", "ja")

# A few Japanese symbols, so the main bank's tables look like a real multi-language model's.
_JAPANESE = ("a", "e", "i", "o", "u", "k", "n", "s", "t")
_JAPANESE_VOWELS = frozenset({"a", "e", "i", "o", "u"})
_GLIDES = {"w": "semivowel", "y": "semivowel", "l": "liquid"}
_SILENCES = ("SP", "AP")

# The real audio side (44.1 kHz, hop 512, 128 slaney mel bins from 40 Hz to 16 kHz); only the networks are small.
_SAMPLE_RATE = 44100
_HOP_SIZE = 512
_MEL_BINS = 128
_MEL_SPEC = {
    "sample_rate": _SAMPLE_RATE,
    "hop_size": _HOP_SIZE,
    "win_size": 2048,
    "fft_size": 2048,
    "num_mel_bins": _MEL_BINS,
    "mel_fmin": 40,
    "mel_fmax": 16000,
}
_FRAME_SPEC = {"sample_rate": _SAMPLE_RATE, "hop_size": _HOP_SIZE}
_KEY_SHIFT_RANGE = (-5.0, 5.0)
_MAX_DEPTH = 0.6  # continuous: 1 - T_start
_LEGACY_MAX_DEPTH = 400  # legacy: K_step, diffusion steps out of 1000
_VOCODER = "tiny_vocoder"


@dataclass(frozen=True)
class _Size:
    hidden: int  # hidden_size: the encoders' width, spk_embed's last axis and the .emb length
    encoder_layers: int
    kernel: int
    flow_width: int  # the sampler's velocity network, run `steps` times
    flow_layers: int
    vocoder_width: int
    vocoder_layers: int


_SIZES = {
    "tiny": _Size(16, 2, 3, 32, 1, 32, 1),
    # One acoustic run over ~10 s of audio (861 frames, 20 steps) takes ~0.8 s on 2 CPU cores.
    "bench": _Size(256, 4, 5, 384, 3, 128, 2),
}


# ---------------------------------------------------------------------------------------------------------------
# Networks. Each top-level module is scripted whole, so shapes stay symbolic (any N, T) and Python loops over
# `steps` become ONNX Loops.


def _expand(values: Tensor, durations: Tensor) -> Tensor:
    """Length regulator: values [1, N, C] repeated over durations [1, N] -> [1, durations.sum(), C].

    A frame's token is the number of token ends at or before it, so this is one gather for any N and T.
    """
    ends = torch.cumsum(durations[0], dim=0)
    frames = torch.arange(ends[-1], device=values.device)
    index = (frames.unsqueeze(1) >= ends.unsqueeze(0)).sum(dim=1)
    return values[:, index]


# The sampler's own Gaussian noise (a RandomNormalLike node, as DiffSinger's diffusion and rectified-flow exports
# draw theirs inside the graph), scaled small so the audio stays the inputs' buzz while the seed still shows in it.
_NOISE_SCALE = 0.05


def _fixed_noise(like: Tensor) -> Tensor:
    """A deterministic pattern under the sampler's small in-graph noise, so the inputs dominate the outputs."""
    frames = torch.arange(like.size(1), device=like.device, dtype=torch.float32).unsqueeze(1)
    channels = torch.arange(like.size(2), device=like.device, dtype=torch.float32).unsqueeze(0)
    return torch.sin(frames * 1.618 + channels * 2.399 + frames * channels * 0.013).unsqueeze(0)


class _ConvStack(nn.Module):
    """Residual 1-D convolutions along the sequence axis of [1, L, C]."""

    def __init__(self, channels: int, layers: int, kernel: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=kernel // 2) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = h + F.silu(conv(h))
        return h.transpose(1, 2)


class _FlowSampler(nn.Module):
    """Rectified-flow Euler sampler: `steps` steps of a velocity network from t_start to 1, conditioned per frame."""

    def __init__(self, channels: int, hidden: int, width: int, layers: int):
        super().__init__()
        self.x_in = nn.Linear(channels + 1, width)
        self.cond_in = nn.Linear(hidden, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.out = nn.Linear(width, channels)
        self.noise_scale = _NOISE_SCALE

    def forward(self, start: Tensor, cond: Tensor, t_start: Tensor, steps: int) -> Tensor:
        cond = self.cond_in(cond)
        noise = _fixed_noise(start) + self.noise_scale * torch.randn_like(start)
        x = t_start * start + (1.0 - t_start) * noise
        dt = (1.0 - t_start) / max(steps, 1)
        t = t_start * torch.ones_like(start[:, :, :1])
        for _ in range(steps):
            h = F.silu(self.x_in(torch.cat([x, t], dim=-1)) + cond)
            for block in self.blocks:
                h = h + F.silu(block(h))
            x = x + dt * self.out(h)
            t = t + dt
        return x


class _MelDecoder(nn.Module):
    """Frame features -> encoder -> a coarse log mel -> the sampler refines it from depth's starting point."""

    def __init__(self, size: _Size, log_scale: float):
        super().__init__()
        self.encoder = _ConvStack(size.hidden, size.encoder_layers, size.kernel)
        self.aux = nn.Linear(size.hidden, _MEL_BINS)
        self.sampler = _FlowSampler(_MEL_BINS, size.hidden, size.flow_width, size.flow_layers)
        self.log_scale = log_scale  # 1 for a natural-log mel, 1/ln(10) for a log10 mel

    def forward(self, frames: Tensor, t_start: Tensor, steps: int) -> Tensor:
        h = self.encoder(frames)
        aux_mel = self.log_scale * (-6.0 + 4.0 * torch.tanh(self.aux(h)))
        return self.sampler(aux_mel, h, t_start, steps)


class _Acoustic(nn.Module):
    """acoustic.onnx with every optional input of the continuous-acceleration exporter."""

    def __init__(self, n_symbols: int, n_languages: int, size: _Size):
        super().__init__()
        self.tokens = nn.Embedding(n_symbols, size.hidden)
        self.languages = nn.Embedding(n_languages + 1, size.hidden)
        self.features = nn.Linear(5, size.hidden)
        self.decoder = _MelDecoder(size, log_scale=1.0)  # mel_base "e", like exporters since v2.4
        self.shift_min, self.shift_max = _KEY_SHIFT_RANGE
        self.min_t_start = 1.0 - _MAX_DEPTH

    def forward(
        self,
        tokens: Tensor,
        languages: Tensor,
        durations: Tensor,
        f0: Tensor,
        energy: Tensor,
        breathiness: Tensor,
        gender: Tensor,
        velocity: Tensor,
        spk_embed: Tensor,
        depth: Tensor,
        steps: int,
    ) -> Tensor:
        # gender -1..1 scales to the key-shift range's ends, as the real graph does.
        gender = gender.clamp(-1.0, 1.0)
        key_shift = torch.where(gender >= 0, gender * self.shift_max, gender * -self.shift_min)
        features = torch.stack(
            [
                torch.log2(f0.clamp(min=1.0) / 440.0),
                (energy + 50.0) / 20.0,
                (breathiness + 50.0) / 20.0,
                key_shift / 12.0,
                torch.log2(velocity.clamp(0.5, 2.0)),
            ],
            dim=-1,
        )
        frames = _expand(self.tokens(tokens) + self.languages(languages), durations)
        frames = frames + self.features(features) + spk_embed
        t_start = torch.clamp(1.0 - depth, min=self.min_t_start, max=1.0)
        return self.decoder(frames, t_start, steps)


class _LegacyAcoustic(nn.Module):
    """A v2.2/v2.3 acoustic.onnx: DDPM-style integer `depth` (steps out of 1000) and `speedup` (DDIM stride)."""

    def __init__(self, n_symbols: int, size: _Size):
        super().__init__()
        self.tokens = nn.Embedding(n_symbols, size.hidden)
        self.features = nn.Linear(1, size.hidden)
        self.decoder = _MelDecoder(size, log_scale=1.0 / math.log(10.0))  # mel_base "10"
        self.max_depth = _LEGACY_MAX_DEPTH

    def forward(self, tokens: Tensor, durations: Tensor, f0: Tensor, depth: Tensor, speedup: Tensor) -> Tensor:
        frames = _expand(self.tokens(tokens), durations)
        frames = frames + self.features(torch.log2(f0.clamp(min=1.0) / 440.0).unsqueeze(-1))
        depth = depth.clamp(0, self.max_depth)
        steps = int(torch.clamp(depth // speedup.clamp(min=1), min=1))
        return self.decoder(frames, 1.0 - depth.float() / 1000.0, steps)


class _Vocoder(nn.Module):
    """vocoder.onnx: a sine at f0 whose loudness, plus a residual, come from the mel; tanh keeps it in [-1, 1]."""

    def __init__(self, size: _Size):
        super().__init__()
        self.mel_in = nn.Linear(_MEL_BINS, size.vocoder_width)
        self.encoder = _ConvStack(size.vocoder_width, size.vocoder_layers, 3)
        self.amplitude = nn.Linear(size.vocoder_width, 1)
        self.residual = nn.Linear(size.vocoder_width, _HOP_SIZE)
        self.hop_size = _HOP_SIZE
        self.radians_per_hz = 2.0 * math.pi / _SAMPLE_RATE  # phase advance per sample at 1 Hz

    def forward(self, mel: Tensor, f0: Tensor) -> Tensor:
        h = self.encoder(F.silu(self.mel_in(mel)))
        # Phase per sample: each frame's start phase (wrapped to one turn, so float32 keeps it exact for long audio)
        # plus the frame's own f0 times the sample offset inside the frame.
        step = f0.unsqueeze(-1) * self.radians_per_hz  # [1, T, 1] radians per sample
        frame_start = torch.cumsum(step * self.hop_size, dim=1) - step * self.hop_size
        frame_start = frame_start - 2.0 * math.pi * torch.floor(frame_start / (2.0 * math.pi))
        offsets = torch.arange(self.hop_size, device=mel.device, dtype=torch.float32)
        phase = frame_start + step * offsets  # [1, T, hop]
        amplitude = torch.sigmoid(self.amplitude(h))
        waveform = 0.6 * amplitude * torch.sin(phase) + 0.05 * self.residual(h)
        return torch.tanh(waveform).reshape(1, -1)


class _Linguistic(nn.Module):
    """The linguistic encoder of dsdur/dspitch/dsvariance: tokens plus a duration per token -> encoder_out, x_masks."""

    def __init__(self, n_symbols: int, n_languages: int, size: _Size):
        super().__init__()
        self.tokens = nn.Embedding(n_symbols, size.hidden)
        self.languages = nn.Embedding(n_languages + 1, size.hidden)
        self.duration_in = nn.Linear(1, size.hidden)
        self.encoder = _ConvStack(size.hidden, size.encoder_layers, size.kernel)

    def encode(self, tokens: Tensor, languages: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        x_masks = tokens == 0
        h = self.tokens(tokens) + self.languages(languages) + self.duration_in(torch.log1p(frames.unsqueeze(-1)))
        return self.encoder(h).masked_fill(x_masks.unsqueeze(-1), 0.0), x_masks


def _word_frames(word_div: Tensor, word_dur: Tensor) -> Tensor:
    """Each token sees its word's length in frames: word_dur repeated over word_div tokens."""
    return _expand(word_dur.unsqueeze(-1).float(), word_div).squeeze(-1)


class _WordLinguistic(_Linguistic):
    """Word mode (the model predicts durations): word_div tokens per word, word_dur frames per word."""

    def forward(self, tokens: Tensor, languages: Tensor, word_div: Tensor, word_dur: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(tokens, languages, _word_frames(word_div, word_dur))


class _PhonemeLinguistic(_Linguistic):
    """Phoneme mode (predict_dur false): the phoneme durations are given."""

    def forward(self, tokens: Tensor, languages: Tensor, ph_dur: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(tokens, languages, ph_dur.float())


class _LegacyWordLinguistic(_Linguistic):
    """Word mode without the `languages` input (exporters before v2.5)."""

    def forward(self, tokens: Tensor, word_div: Tensor, word_dur: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(tokens, torch.zeros_like(tokens), _word_frames(word_div, word_dur))


class _Duration(nn.Module):
    """dur.onnx: a positive duration in frames per token (a few frames on average)."""

    def __init__(self, size: _Size):
        super().__init__()
        self.midi_in = nn.Linear(1, size.hidden)
        self.encoder = _ConvStack(size.hidden, size.encoder_layers, size.kernel)
        self.out = nn.Linear(size.hidden, 1)

    def predict(self, h: Tensor, x_masks: Tensor, ph_midi: Tensor) -> Tensor:
        h = h + self.midi_in((ph_midi.float().unsqueeze(-1) - 60.0) / 12.0)
        h = self.encoder(h.masked_fill(x_masks.unsqueeze(-1), 0.0))
        # tanh bounds the random network's output, so durations stay between ~1.7 and ~5.7 frames at any size.
        return 4.0 * F.softplus(torch.tanh(0.25 * self.out(h).squeeze(-1))) + 0.5

    def forward(self, encoder_out: Tensor, x_masks: Tensor, ph_midi: Tensor, spk_embed: Tensor) -> Tensor:
        return self.predict(encoder_out + spk_embed, x_masks, ph_midi)


class _SingleSpeakerDuration(_Duration):
    def forward(self, encoder_out: Tensor, x_masks: Tensor, ph_midi: Tensor) -> Tensor:
        return self.predict(encoder_out, x_masks, ph_midi)


class _Pitch(nn.Module):
    """pitch.onnx: the notes' MIDI over their frames plus a learned deviation of a few tenths of a semitone."""

    def __init__(self, size: _Size):
        super().__init__()
        self.notes_in = nn.Linear(2, size.hidden)
        self.encoder = _ConvStack(size.hidden, size.encoder_layers, size.kernel)
        self.sampler = _FlowSampler(1, size.hidden, size.flow_width, size.flow_layers)

    def forward(
        self,
        encoder_out: Tensor,
        ph_dur: Tensor,
        note_midi: Tensor,
        note_rest: Tensor,
        note_dur: Tensor,
        pitch: Tensor,
        expr: Tensor,
        retake: Tensor,
        spk_embed: Tensor,
        steps: int,
    ) -> Tensor:
        base = _expand(note_midi.unsqueeze(-1), note_dur)
        rest = _expand(note_rest.unsqueeze(-1).float(), note_dur)
        notes = torch.cat([(base - 60.0) / 12.0, rest], dim=-1)
        h = self.encoder(_expand(encoder_out, ph_dur) + self.notes_in(notes) + spk_embed)
        deviation = self.sampler(torch.zeros_like(base), h, torch.tensor(0.0), steps)
        predicted = base + expr.unsqueeze(-1) * 0.4 * torch.tanh(deviation)
        return torch.where(retake, predicted.squeeze(-1), pitch)


class _Variance(nn.Module):
    """variance.onnx predicting energy and breathiness in dB (about -58..-22); retake's last axis is in that order."""

    def __init__(self, size: _Size):
        super().__init__()
        self.frames_in = nn.Linear(3, size.hidden)
        self.encoder = _ConvStack(size.hidden, size.encoder_layers, size.kernel)
        self.sampler = _FlowSampler(2, size.hidden, size.flow_width, size.flow_layers)

    def forward(
        self,
        encoder_out: Tensor,
        ph_dur: Tensor,
        pitch: Tensor,
        energy: Tensor,
        breathiness: Tensor,
        retake: Tensor,
        spk_embed: Tensor,
        steps: int,
    ) -> tuple[Tensor, Tensor]:
        given = torch.stack([energy, breathiness], dim=-1)
        # The curves that are kept (retake false) condition the prediction of the others.
        known = torch.where(retake, torch.zeros_like(given), (given + 50.0) / 20.0)
        frames = self.frames_in(torch.cat([((pitch - 60.0) / 12.0).unsqueeze(-1), known], dim=-1))
        h = self.encoder(_expand(encoder_out, ph_dur) + frames + spk_embed)
        predicted = -40.0 + 18.0 * torch.tanh(self.sampler(torch.zeros_like(given), h, torch.tensor(0.0), steps))
        result = torch.where(retake, predicted, given)
        return result[:, :, 0], result[:, :, 1]


# ---------------------------------------------------------------------------------------------------------------
# ONNX export. Each graph is described once by its inputs and outputs: (name, dtype, shape), a string dimension being
# dynamic. `int` is a TorchScript int argument, which the exporter writes as an int64 rank-0 input (as `steps` is).

_N, _T, _W, _M = "n_tokens", "n_frames", "n_words", "n_notes"
_Spec = list[tuple[str, object, tuple]]

# Example sizes and values for the export run, with consistent sums (4 tokens x 3 = 12 frames, 2 words x 2 tokens, ...).
_EXAMPLE_DIMS = {_N: 4, _T: 12, _W: 2, _M: 3}
_EXAMPLE_VALUES = {
    "durations": 3,
    "ph_dur": 3,
    "word_div": 2,
    "word_dur": 6,
    "note_dur": 4,
    "ph_midi": 60,
    "note_midi": 60.0,
    "f0": 440.0,
    "depth": _LEGACY_MAX_DEPTH,
    "speedup": 20,
    "steps": 2,
}


def _example(name: str, dtype: object, shape: tuple) -> object:
    value = _EXAMPLE_VALUES.get(name, 1)
    if dtype is int:
        return value
    dims = [_EXAMPLE_DIMS.get(dim, dim) for dim in shape]
    return torch.full(dims, value, dtype=dtype)


def _export(module: nn.Module, path: Path, inputs: _Spec, outputs: _Spec) -> None:
    shapes = {name: shape for name, _, shape in inputs + outputs}
    dynamic = {name: {i: d for i, d in enumerate(dims) if isinstance(d, str)} for name, dims in shapes.items()}
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit.script and the TorchScript exporter are deprecated, but they are what DiffSinger's exporters
        # use, and the only route that turns a loop over `steps` into an ONNX Loop.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            torch.jit.script(module.eval()),
            tuple(_example(*item) for item in inputs),
            str(path),
            input_names=[name for name, _, _ in inputs],
            output_names=[name for name, _, _ in outputs],
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    # The exporter cannot infer outputs made inside a Loop (it names them like "Loopmel_dim_0"): declare them exactly.
    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name], strict=True):
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size
    onnx.save(model, str(path))


def _acoustic_spec(hidden: int) -> tuple[_Spec, _Spec]:
    frames = [(name, torch.float32, (1, _T)) for name in ("f0", "energy", "breathiness", "gender", "velocity")]
    return (
        [
            ("tokens", torch.int64, (1, _N)),
            ("languages", torch.int64, (1, _N)),
            ("durations", torch.int64, (1, _N)),
            *frames,
            ("spk_embed", torch.float32, (1, _T, hidden)),
            ("depth", torch.float32, ()),
            ("steps", int, ()),
        ],
        [("mel", torch.float32, (1, _T, _MEL_BINS))],
    )


_LEGACY_ACOUSTIC_SPEC = (
    [
        ("tokens", torch.int64, (1, _N)),
        ("durations", torch.int64, (1, _N)),
        ("f0", torch.float32, (1, _T)),
        ("depth", torch.int64, ()),
        ("speedup", torch.int64, ()),
    ],
    [("mel", torch.float32, (1, _T, _MEL_BINS))],
)
_VOCODER_SPEC = (
    [("mel", torch.float32, (1, _T, _MEL_BINS)), ("f0", torch.float32, (1, _T))],
    [("waveform", torch.float32, (1, "n_samples"))],
)


def _linguistic_spec(hidden: int, mode: str, languages: bool = True) -> tuple[_Spec, _Spec]:
    if mode == "word":
        durations = [("word_div", torch.int64, (1, _W)), ("word_dur", torch.int64, (1, _W))]
    else:
        durations = [("ph_dur", torch.int64, (1, _N))]
    return (
        [("tokens", torch.int64, (1, _N)), *([("languages", torch.int64, (1, _N))] if languages else []), *durations],
        [("encoder_out", torch.float32, (1, _N, hidden)), ("x_masks", torch.bool, (1, _N))],
    )


def _dur_spec(hidden: int, speakers: bool = True) -> tuple[_Spec, _Spec]:
    return (
        [
            ("encoder_out", torch.float32, (1, _N, hidden)),
            ("x_masks", torch.bool, (1, _N)),
            ("ph_midi", torch.int64, (1, _N)),
            *([("spk_embed", torch.float32, (1, _N, hidden))] if speakers else []),
        ],
        [("ph_dur_pred", torch.float32, (1, _N))],
    )


def _pitch_spec(hidden: int) -> tuple[_Spec, _Spec]:
    return (
        [
            ("encoder_out", torch.float32, (1, _N, hidden)),
            ("ph_dur", torch.int64, (1, _N)),
            ("note_midi", torch.float32, (1, _M)),
            ("note_rest", torch.bool, (1, _M)),
            ("note_dur", torch.int64, (1, _M)),
            ("pitch", torch.float32, (1, _T)),
            ("expr", torch.float32, (1, _T)),
            ("retake", torch.bool, (1, _T)),
            ("spk_embed", torch.float32, (1, _T, hidden)),
            ("steps", int, ()),
        ],
        [("pitch_pred", torch.float32, (1, _T))],
    )


def _variance_spec(hidden: int) -> tuple[_Spec, _Spec]:
    return (
        [
            ("encoder_out", torch.float32, (1, _N, hidden)),
            ("ph_dur", torch.int64, (1, _N)),
            ("pitch", torch.float32, (1, _T)),
            ("energy", torch.float32, (1, _T)),
            ("breathiness", torch.float32, (1, _T)),
            ("retake", torch.bool, (1, _T, 2)),
            ("spk_embed", torch.float32, (1, _T, hidden)),
            ("steps", int, ()),
        ],
        [("energy_pred", torch.float32, (1, _T)), ("breathiness_pred", torch.float32, (1, _T))],
    )


# ---------------------------------------------------------------------------------------------------------------
# Bank files.


def _write_yaml(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _symbol_type(symbol: str) -> str:
    language, _, phoneme = symbol.rpartition("/")
    vowels = _JAPANESE_VOWELS if language == "ja" else VOWELS
    return "vowel" if phoneme in vowels else _GLIDES.get(phoneme, "consonant")


def _symbols(languages: bool) -> list[str]:
    """The phoneme inventory, sorted like DiffSinger's: SP and AP bare, the rest `<lang>/<ph>` in a multi-language
    model."""
    english = sorted({phoneme for phonemes in WORDS.values() for phoneme in phonemes})
    if not languages:
        return sorted([*_SILENCES, *english])
    return sorted([*_SILENCES, *(f"en/{p}" for p in english), *(f"ja/{p}" for p in _JAPANESE)])


def _write_dsdict(folder: Path, symbols: list[str], prefix: str) -> None:
    """dsdict.yaml: every symbol but SP/AP (OpenUtau adds those) with its type, then the words.

    The entries name phonemes exactly as the phoneme table spells them (OpenUtau's DiffSingerPhonemizer looks
    dictionary results up in the table as they are), so in a multi-language bank they carry the `en/` prefix.
    """
    _write_yaml(
        folder / "dsdict.yaml",
        {
            "symbols": [{"symbol": s, "type": _symbol_type(s)} for s in symbols if s not in _SILENCES],
            "entries": [{"grapheme": word, "phonemes": [prefix + p for p in phs]} for word, phs in WORDS.items()],
        },
    )


def _write_speakers(folder: Path, hidden: int) -> None:
    """One raw little-endian float32 x hidden_size file per speaker; each model folder has its own."""
    for speaker in SPEAKERS:
        (folder / f"{speaker}.emb").write_bytes(torch.randn(hidden).numpy().astype("<f4").tobytes())


def _write_character(target: Path, speakers: bool) -> None:
    (target / "character.txt").write_text("name=Tiny Random\nauthor=tests\n", encoding="utf-8")
    character = {
        "singer_type": "diffsinger",
        "default_phonemizer": "OpenUtau.Core.DiffSinger.DiffSingerPhonemizer",
        "text_file_encoding": "utf-8",
    }
    if speakers:
        character["subbanks"] = [
            {"color": f"{i:02d}: {speaker.split('.')[-1]}", "prefix": "", "suffix": speaker, "tone_ranges": ["C1-B7"]}
            for i, speaker in enumerate(SPEAKERS, start=1)
        ]
    _write_yaml(target / "character.yaml", character)


def _write_vocoder(target: Path, size: _Size, mel_base: str) -> None:
    folder = target / "dsvocoder"
    folder.mkdir(parents=True, exist_ok=True)
    _write_yaml(
        folder / "vocoder.yaml",
        {
            "name": _VOCODER,
            "model": "vocoder.onnx",
            **_MEL_SPEC,
            "mel_base": mel_base,
            "mel_scale": "slaney",
            "pitch_controllable": False,
        },
    )
    _export(_Vocoder(size), folder / "vocoder.onnx", *_VOCODER_SPEC)


def _readable(target: Path) -> None:
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def build_bank(target: Path, size: str = "tiny") -> None:
    """The main bank: continuous-acceleration acoustic with every optional input, dsdur/dspitch/dsvariance,
    dsvocoder."""
    spec = _SIZES[size]
    hidden = spec.hidden
    symbols = _symbols(languages=True)
    table = {symbol: i for i, symbol in enumerate(symbols, start=1)}  # id 0 is padding, not listed
    n_symbols = len(symbols) + 1
    languages = {language: i for i, language in enumerate(LANGUAGES, start=1)}
    stage_common = {"languages": "languages.json", "use_lang_id": True}
    target = Path(target)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        target.mkdir(parents=True, exist_ok=True)
        _write_character(target, speakers=True)
        _write_json(target / "phonemes.json", table)
        _write_json(target / "languages.json", languages)
        _write_speakers(target, hidden)
        _write_yaml(
            target / "dsconfig.yaml",
            {
                "phonemes": "phonemes.json",
                **stage_common,
                "acoustic": "acoustic.onnx",
                "hidden_size": hidden,
                "vocoder": _VOCODER,
                "speakers": list(SPEAKERS),
                "augmentation_args": {"random_pitch_shifting": {"range": list(_KEY_SHIFT_RANGE)}},
                "use_key_shift_embed": True,
                "use_speed_embed": True,
                "use_energy_embed": True,
                "use_breathiness_embed": True,
                "use_voicing_embed": False,
                "use_tension_embed": False,
                "use_continuous_acceleration": True,
                "use_variable_depth": True,
                "max_depth": _MAX_DEPTH,
                **_MEL_SPEC,
                "mel_base": "e",
                "mel_scale": "slaney",
            },
        )
        _export(_Acoustic(n_symbols, len(LANGUAGES), spec), target / "acoustic.onnx", *_acoustic_spec(hidden))
        _write_vocoder(target, spec, mel_base="10")  # differs from the acoustic "e": the runner must convert

        stages = {
            # The dsdur table is a text file (line number = id, <PAD> first) with the same ids as phonemes.json.
            "dsdur": ("phonemes.txt", {"dur": "dur.onnx", "predict_dur": True}),
            "dspitch": (
                "phonemes.json",
                {"pitch": "pitch.onnx", "predict_dur": True, "use_expr": True, "use_note_rest": True},
            ),
            "dsvariance": (
                "phonemes.json",
                {
                    "variance": "variance.onnx",
                    "predict_dur": False,  # so its linguistic graph is in phoneme mode
                    "predict_energy": True,
                    "predict_breathiness": True,
                    "predict_voicing": False,
                    "predict_tension": False,
                },
            ),
        }
        for name, (phonemes, keys) in stages.items():
            folder = target / name
            folder.mkdir(exist_ok=True)
            if phonemes.endswith(".json"):
                _write_json(folder / phonemes, table)
            else:
                (folder / phonemes).write_text("\n".join(["<PAD>", *symbols]) + "\n", encoding="utf-8")
            _write_json(folder / "languages.json", languages)
            _write_dsdict(folder, symbols, prefix="en/")
            _write_speakers(folder, hidden)
            config = {
                "phonemes": phonemes,
                **stage_common,
                "linguistic": "linguistic.onnx",
                "hidden_size": hidden,
                "speakers": list(SPEAKERS),
                **keys,
                **({} if name == "dsdur" else {"use_continuous_acceleration": True}),
                **_FRAME_SPEC,
            }
            _write_yaml(folder / "dsconfig.yaml", config)
            word_mode = keys["predict_dur"]
            linguistic = (_WordLinguistic if word_mode else _PhonemeLinguistic)(n_symbols, len(LANGUAGES), spec)
            _export(linguistic, folder / "linguistic.onnx", *_linguistic_spec(hidden, "word" if word_mode else "ph"))

        _export(_Duration(spec), target / "dsdur" / "dur.onnx", *_dur_spec(hidden))
        _export(_Pitch(spec), target / "dspitch" / "pitch.onnx", *_pitch_spec(hidden))
        _export(_Variance(spec), target / "dsvariance" / "variance.onnx", *_variance_spec(hidden))
    _readable(target)


def build_legacy_bank(target: Path, size: str = "tiny") -> None:
    """A v2.2/v2.3-style bank: integer depth/speedup, text phoneme table, one speaker, only dsdur, own dsvocoder/."""
    spec = _SIZES[size]
    hidden = spec.hidden
    symbols = _symbols(languages=False)
    text_table = "\n".join(["<PAD>", *symbols]) + "\n"  # num_pad_tokens 1: the first real phoneme has id 1
    n_symbols = len(symbols) + 1
    target = Path(target)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        target.mkdir(parents=True, exist_ok=True)
        _write_character(target, speakers=False)
        (target / "phonemes.txt").write_text(text_table, encoding="utf-8")
        _write_yaml(
            target / "dsconfig.yaml",
            {
                "phonemes": "phonemes.txt",
                "acoustic": "acoustic.onnx",
                "hidden_size": hidden,
                "vocoder": _VOCODER,
                "use_key_shift_embed": False,
                "use_speed_embed": False,
                "use_energy_embed": False,
                "use_breathiness_embed": False,
                "use_voicing_embed": False,
                "use_tension_embed": False,
                # v2.3's exporter wrote use_shallow_diffusion (OpenUtau falls back to it for use_variable_depth)
                # and K_step as max_depth; continuous acceleration came in v2.4.
                "use_continuous_acceleration": False,
                "use_shallow_diffusion": True,
                "max_depth": _LEGACY_MAX_DEPTH,
                **_MEL_SPEC,
                "mel_base": "10",
                "mel_scale": "slaney",
            },
        )
        _export(_LegacyAcoustic(n_symbols, spec), target / "acoustic.onnx", *_LEGACY_ACOUSTIC_SPEC)
        _write_vocoder(target, spec, mel_base="10")

        folder = target / "dsdur"
        folder.mkdir(exist_ok=True)
        (folder / "phonemes.txt").write_text(text_table, encoding="utf-8")
        _write_dsdict(folder, symbols, prefix="")
        _write_yaml(
            folder / "dsconfig.yaml",
            {
                "phonemes": "phonemes.txt",
                "linguistic": "linguistic.onnx",
                "hidden_size": hidden,
                "predict_dur": True,
                "dur": "dur.onnx",
                **_FRAME_SPEC,
            },
        )
        _export(
            _LegacyWordLinguistic(n_symbols, 0, spec),
            folder / "linguistic.onnx",
            *_linguistic_spec(hidden, "word", languages=False),
        )
        _export(_SingleSpeakerDuration(spec), folder / "dur.onnx", *_dur_spec(hidden, speakers=False))
    _readable(target)


# ---------------------------------------------------------------------------------------------------------------
# Variants of a built bank, in layouts published banks ship.

# Words of the main bank's Japanese symbols, for a dictionary of that language alone.
JAPANESE_WORDS: dict[str, list[str]] = {"sakana": ["s", "a", "k", "a", "n", "a"], "neko": ["n", "e", "k", "o"]}


def move_timing_to_root(bank: Path) -> None:
    """The main bank without dsdur/: its graphs and dictionary beside the acoustic model and their keys in the root
    dsconfig.yaml, the layout OpenUtau's phonemizer falls back to (the tables and speakers are the root's)."""
    timing = bank / "dsdur"
    keys = yaml.safe_load((timing / "dsconfig.yaml").read_text(encoding="utf-8"))
    for name in ("linguistic.onnx", "dur.onnx", "dsdict.yaml"):
        shutil.move(timing / name, bank / name)
    shutil.rmtree(timing)
    root = yaml.safe_load((bank / "dsconfig.yaml").read_text(encoding="utf-8"))
    _write_yaml(bank / "dsconfig.yaml", root | {key: keys[key] for key in ("linguistic", "dur", "predict_dur")})


def write_language_dictionary(folder: Path, language: str, words: dict[str, list[str]]) -> None:
    """dsdict-<language>.yaml for the main bank: the symbols of that language and `words` spelled in them."""
    prefix = f"{language}/"
    _write_yaml(
        folder / f"dsdict-{language}.yaml",
        {
            "symbols": [
                {"symbol": s, "type": _symbol_type(s)} for s in _symbols(languages=True) if s.startswith(prefix)
            ],
            "entries": [{"grapheme": word, "phonemes": [prefix + p for p in phs]} for word, phs in words.items()],
        },
    )


def write_oudep(folder: Path, package_id: str) -> None:
    """oudep.yaml, the manifest of an OpenUtau dependency package (.oudep): OpenUtau installs the package as
    Dependencies/<id>/, the name a bank's `vocoder:` gives."""
    _write_yaml(folder / "oudep.yaml", {"id": package_id, "version": "1.0.0", "description": "tiny random vocoder"})
