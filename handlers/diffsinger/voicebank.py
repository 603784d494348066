"""A DiffSinger voicebank as OpenUtau users unzip it: configs, phoneme tables, dictionaries, speakers, vocoder.

Read once at start-up, before any graph loads: a missing file, a malformed table or a vocoder whose mel
parameters differ from the acoustic model's is a ModelFilesError that names the file and the rule. A broken
dictionary of one language (dsdict-<lang>.yaml) only disables that language, with a warning: OpenUtau loads
each language's dictionary in its own phonemizer, so such a bank works there for its other languages.
Defaults follow OpenUtau's reader (DiffSingerConfig.cs): only predict_dur, predict_energy and
predict_breathiness are true when absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from loguru import logger

from shared.errors import ModelFilesError

VARIANCES = ("energy", "breathiness", "voicing", "tension")  # the order of the variance graph's retake axis
SILENCES = ("SP", "AP")  # always present, never language-prefixed, always vowels for timing
TRUE_WHEN_ABSENT = frozenset({"predict_dur", "predict_energy", "predict_breathiness"})
GLIDE_TYPES = frozenset({"semivowel", "liquid"})


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelFilesError(f"{path}: not readable YAML ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise ModelFilesError(f"{path}: expected a mapping of keys at the top level")
    return data


@dataclass(frozen=True)
class MelSpec:
    sample_rate: int
    hop_size: int
    win_size: int
    fft_size: int
    num_mel_bins: int
    mel_fmin: float
    mel_fmax: float
    mel_base: str  # "10" or "e": the logarithm of the mel values
    mel_scale: str  # "slaney" or "htk"

    @classmethod
    def read(cls, raw: dict[str, Any], path: Path) -> MelSpec:
        spec = cls(
            sample_rate=int(raw.get("sample_rate", 44100)),
            hop_size=int(raw.get("hop_size", 512)),
            win_size=int(raw.get("win_size", 2048)),
            fft_size=int(raw.get("fft_size", 2048)),
            num_mel_bins=int(raw.get("num_mel_bins", 128)),
            mel_fmin=float(raw.get("mel_fmin", 40)),
            mel_fmax=float(raw.get("mel_fmax", 16000)),
            mel_base=str(raw.get("mel_base", "10")),
            mel_scale=str(raw.get("mel_scale", "slaney")),
        )
        if spec.mel_base not in ("10", "e") or spec.mel_scale not in ("slaney", "htk"):
            raise ModelFilesError(
                f"{path}: mel_base must be 10 or e and mel_scale slaney or htk (got {spec.mel_base}, {spec.mel_scale})"
            )
        return spec

    def differences(self, other: MelSpec) -> list[str]:
        """Parameters that must agree between an acoustic model and its vocoder (mel_base may differ)."""
        found = [
            f"{name} {getattr(self, name)} vs {getattr(other, name)}"
            for name in ("sample_rate", "hop_size", "win_size", "fft_size", "num_mel_bins", "mel_scale")
            if getattr(self, name) != getattr(other, name)
        ]
        found += [
            f"{name} {getattr(self, name)} vs {getattr(other, name)}"
            for name in ("mel_fmin", "mel_fmax")
            if abs(getattr(self, name) - getattr(other, name)) > 1e-5
        ]
        return found


@dataclass(frozen=True)
class Dictionary:
    """A dsdict: graphemes to phonemes, the symbols it declares (SP and AP always), and which are vowels and
    glides."""

    entries: dict[str, tuple[str, ...]]
    symbols: frozenset[str]
    vowels: frozenset[str]
    glides: frozenset[str]

    @classmethod
    def read(cls, path: Path) -> Dictionary:
        raw = _read_yaml(path)
        kinds: dict[str, str] = {}
        for symbol in raw.get("symbols") or []:
            if not isinstance(symbol, dict) or "symbol" not in symbol:
                raise ModelFilesError(f"{path}: every item of symbols needs a symbol and a type")
            kinds[str(symbol["symbol"])] = str(symbol.get("type", ""))
        entries: dict[str, tuple[str, ...]] = {}
        for entry in raw.get("entries") or []:
            if not isinstance(entry, dict) or "grapheme" not in entry:
                raise ModelFilesError(f"{path}: every item of entries needs a grapheme and its phonemes")
            # As OpenUtau reads it: phonemes that are not declared symbols are dropped.
            entries[str(entry["grapheme"])] = tuple(str(p) for p in entry.get("phonemes") or [] if str(p) in kinds)
        if not kinds and not entries:
            raise ModelFilesError(f"{path}: no symbols and no entries")
        vowels = {symbol for symbol, kind in kinds.items() if kind == "vowel"} | set(SILENCES)
        glides = frozenset(symbol for symbol, kind in kinds.items() if kind in GLIDE_TYPES)
        return cls(entries, frozenset(kinds) | set(SILENCES), frozenset(vowels), glides)

    def lookup(self, word: str) -> tuple[str, ...] | None:
        return self.entries.get(word) or self.entries.get(word.lower())


@dataclass(frozen=True)
class StageConfig:
    """One dsconfig.yaml (the bank's root, or dsdur/dspitch/dsvariance) and the files it names."""

    folder: Path
    raw: dict[str, Any]
    phonemes: dict[str, int]
    languages: dict[str, int]  # empty unless use_lang_id
    speakers: tuple[str, ...]
    speaker_embeds: np.ndarray | None  # [speakers, hidden_size] float32, None for a single-speaker model
    dictionary: Dictionary | None  # the folder's dsdict.yaml, when it has one

    @property
    def hidden_size(self) -> int:
        return int(self.raw.get("hidden_size", 256))

    @property
    def frame_seconds(self) -> float:
        return int(self.raw.get("hop_size", 512)) / int(self.raw.get("sample_rate", 44100))

    def flag(self, name: str) -> bool:
        return bool(self.raw.get(name, name in TRUE_WHEN_ABSENT))

    def model(self, key: str) -> Path:
        return _named_file(self.folder, self.raw, key)

    def token_ids(self, symbols: list[str]) -> np.ndarray:
        return np.array([[self.phonemes[symbol] for symbol in symbols]], dtype=np.int64)

    def language_ids(self, symbols: list[str]) -> np.ndarray:
        """Each token's language (the text before "/"), 0 where it has none or the bank does not know it."""
        ids = [self.languages.get(symbol.split("/", 1)[0], 0) if "/" in symbol else 0 for symbol in symbols]
        return np.array([ids], dtype=np.int64)


def _named_file(folder: Path, raw: dict[str, Any], key: str) -> Path:
    name = raw.get(key)
    if not name:
        raise ModelFilesError(f"{folder / 'dsconfig.yaml'}: {key} is not set")
    path = folder / str(name)
    if not path.is_file():
        raise ModelFilesError(f"{folder / 'dsconfig.yaml'}: {key} names {path}, which does not exist")
    return path


def _phoneme_table(path: Path) -> dict[str, int]:
    """{symbol: id}: a .json object, or a text file whose line number is the id (legacy, <PAD> first)."""
    if path.suffix.lower() == ".json":
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFilesError(f"{path}: not a readable JSON phoneme table ({exc})") from exc
        if not isinstance(table, dict) or not all(isinstance(v, int) for v in table.values()):
            raise ModelFilesError(f"{path}: a JSON phoneme table maps each symbol to an integer id")
        return table
    return {line: index for index, line in enumerate(path.read_text(encoding="utf-8").splitlines())}


def read_stage(folder: Path) -> StageConfig:
    raw = _read_yaml(folder / "dsconfig.yaml")
    phonemes = _phoneme_table(_named_file(folder, {"phonemes": "phonemes.txt", **raw}, "phonemes"))
    if "SP" not in phonemes:
        raise ModelFilesError(f"{folder / 'dsconfig.yaml'}: its phoneme table has no SP (silence)")
    languages: dict[str, int] = {}
    if raw.get("use_lang_id"):
        languages = json.loads(_named_file(folder, raw, "languages").read_text(encoding="utf-8"))
    speakers = tuple(str(name) for name in raw.get("speakers") or [])
    embeds = None
    if speakers:
        hidden = int(raw.get("hidden_size", 256))
        rows = []
        for speaker in speakers:
            path = folder / f"{speaker}.emb"
            if not path.is_file():
                raise ModelFilesError(f"{folder / 'dsconfig.yaml'}: speaker {speaker} has no embedding file {path}")
            row = np.fromfile(path, dtype="<f4")
            if row.size != hidden:
                raise ModelFilesError(f"{path}: {row.size} float32 values, expected hidden_size {hidden}")
            rows.append(row)
        embeds = np.stack(rows).astype(np.float32)
    dictionary = Dictionary.read(folder / "dsdict.yaml") if (folder / "dsdict.yaml").is_file() else None
    return StageConfig(folder, raw, phonemes, languages, speakers, embeds, dictionary)


@dataclass(frozen=True)
class Vocoder:
    folder: Path
    model: Path
    mel: MelSpec
    pitch_controllable: bool


@dataclass(frozen=True)
class Voicebank:
    folder: Path
    acoustic: StageConfig
    mel: MelSpec
    vocoder: Vocoder
    dur: StageConfig | None
    pitch: StageConfig | None
    variance: StageConfig | None
    dictionaries: dict[str, Dictionary]  # language ("" for dsdict.yaml) -> the timing model's dictionary
    disabled_languages: dict[str, str]  # language -> why its dsdict-<language>.yaml cannot be used

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def continuous(self) -> bool:
        return self.acoustic.flag("use_continuous_acceleration")

    @property
    def max_depth(self) -> float:
        """As OpenUtau reads it: legacy configs hold a step count out of 1000."""
        depth = float(self.acoustic.raw.get("max_depth", 0.0))
        return depth if self.continuous else depth / 1000

    @property
    def variable_depth(self) -> bool:
        raw = self.acoustic.raw
        return bool(raw.get("use_variable_depth", raw.get("use_shallow_diffusion", False)))

    @property
    def key_shift_range(self) -> tuple[float, float] | None:
        shifting = (self.acoustic.raw.get("augmentation_args") or {}).get("random_pitch_shifting") or {}
        bounds = shifting.get("range")
        return (float(bounds[0]), float(bounds[1])) if bounds else None

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self.acoustic.languages)) if self.acoustic.languages else ()


def _vocoder(bank: Path, raw: dict[str, Any], vocoders_root: Path) -> Vocoder:
    folder = bank / "dsvocoder"
    if not (folder / "vocoder.yaml").is_file():
        name = raw.get("vocoder")
        if not name:
            raise ModelFilesError(f"{bank}: no dsvocoder/vocoder.yaml and dsconfig.yaml names no vocoder")
        folder = vocoders_root / str(name)
        if not (folder / "vocoder.yaml").is_file():
            raise ModelFilesError(
                f"{bank}: no dsvocoder/ in the bank and no shared vocoder {folder / 'vocoder.yaml'} "
                f"(dsconfig.yaml names vocoder {name}); unzip that vocoder into {folder}"
            )
    config = _read_yaml(folder / "vocoder.yaml")
    model = _named_file(folder, {"model": "model.onnx", **config}, "model")
    return Vocoder(folder, model, MelSpec.read(config, folder / "vocoder.yaml"), bool(config.get("pitch_controllable")))


def _timing_stage(folder: Path, acoustic: StageConfig) -> StageConfig | None:
    """dsdur/ when it has a dsconfig.yaml; else the bank's root, as OpenUtau's phonemizer falls back to it
    (releases up to 0.1.568), when the root dsconfig.yaml names a duration model. The pitch and variance models
    have no such fallback in OpenUtau since May 2025: only dspitch/ and dsvariance/ hold them."""
    if (folder / "dsdur" / "dsconfig.yaml").is_file():
        return read_stage(folder / "dsdur")
    return acoustic if acoustic.raw.get("dur") else None


def _dictionaries(timing: StageConfig) -> tuple[dict[str, Dictionary], dict[str, str]]:
    """The timing model's dictionaries by language, beside its dsconfig.yaml, and the languages whose own
    dictionary is broken. dsdict.yaml serves every language without its own, so it must be sound; a broken
    dsdict-<language>.yaml disables that language alone (OpenUtau does not fall back to dsdict.yaml for it)."""
    dictionaries = {"": timing.dictionary} if timing.dictionary is not None else {}
    disabled: dict[str, str] = {}
    for path in sorted(timing.folder.glob("dsdict-*.yaml")):
        language = path.stem.removeprefix("dsdict-")
        try:
            dictionaries[language] = Dictionary.read(path)
        except ModelFilesError as exc:
            logger.warning("language {} disabled: {}", language, exc)
            disabled[language] = str(exc)
    return dictionaries, disabled


def load_voicebank(folder: Path, vocoders_root: Path) -> Voicebank:
    acoustic = read_stage(folder)
    acoustic.model("acoustic")
    mel = MelSpec.read(acoustic.raw, folder / "dsconfig.yaml")
    vocoder = _vocoder(folder, acoustic.raw, vocoders_root)
    differences = mel.differences(vocoder.mel)
    if differences:
        raise ModelFilesError(
            f"{folder}: the vocoder in {vocoder.folder} does not match the acoustic model's mel parameters "
            f"({'; '.join(differences)}); use the vocoder the bank was made for"
        )
    timing = _timing_stage(folder, acoustic)
    pitch, variance = (
        read_stage(folder / name) if (folder / name / "dsconfig.yaml").is_file() else None
        for name in ("dspitch", "dsvariance")
    )
    dictionaries, disabled = _dictionaries(timing) if timing is not None else ({}, {})
    return Voicebank(folder, acoustic, mel, vocoder, timing, pitch, variance, dictionaries, disabled)
