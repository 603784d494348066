"""The bank's ONNX graphs run in OpenUtau's order: pitch -> variance -> acoustic -> vocoder, per segment.

Feeds are built from what each graph declares (`session.get_inputs()`), not from the dsconfig flags alone:
exporters write flags that can disagree with the graph (use_speed_embed, use_key_shift_embed), and the
rank of `steps`/`depth` differs between exporter versions. A declared input the runner cannot provide is
a start-up error. Frame arithmetic follows DiffSinger's inference: a phoneme ends at frame
round(end_seconds / frame_seconds + 0.5). A segment is sung as given, its silences (SP, AP) included:
the .ds format carries them, and the lyrics front end adds them as OpenUtau does.

A graph that samples its own noise (DiffSinger's diffusion and rectified-flow exports: RandomNormalLike and
kin) gets a new session before its first run in each job, created under a seed drawn from the job's: onnxruntime
seeds a random node's generator when its session is created (`set_seed` before a run of an existing session
does not restart it), so this is what makes a seed repeat its audio whatever jobs ran before. Graphs without
random nodes keep their sessions.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime

from handlers.diffsinger.lyrics import Group
from handlers.diffsinger.voicebank import SILENCES, VARIANCES, StageConfig, Voicebank
from shared.errors import InputError, ModelFilesError
from shared.stop import StopSignal

LN_10 = math.log(10.0)
# What each graph must be able to take; anything else it declares is refused at start-up.
KNOWN_INPUTS = {
    "acoustic": {"tokens", "languages", "durations", "f0", "gender", "velocity", "spk_embed", "depth", "steps",
                 "speedup", *VARIANCES},
    "vocoder": {"mel", "f0"},
    "dur_linguistic": {"tokens", "languages", "word_div", "word_dur", "ph_dur"},
    "dur": {"encoder_out", "x_masks", "ph_midi", "spk_embed"},
    "pitch_linguistic": {"tokens", "languages", "word_div", "word_dur", "ph_dur"},
    "pitch": {"encoder_out", "ph_dur", "note_midi", "note_rest", "note_dur", "note_glide", "pitch", "expr",
              "retake", "spk_embed", "steps", "speedup"},
    "variance_linguistic": {"tokens", "languages", "word_div", "word_dur", "ph_dur"},
    "variance": {"encoder_out", "ph_dur", "pitch", "retake", "spk_embed", "steps", "speedup", *VARIANCES},
}  # fmt: skip


# ONNX operators that draw random numbers; their generators are seeded when a session is created.
RANDOM_OPS = ("RandomNormalLike", "RandomNormal", "RandomUniformLike", "RandomUniform", "Multinomial", "Bernoulli")


def samples_noise(path: Path) -> bool:
    """Whether a graph holds a random node, in its body or any subgraph (a Loop's, an If's). Read from the
    file's bytes, without the onnx package (not in the image): a node's op_type is its field 4, a string, so a
    random node's bytes are that tag, the name's length and the name."""
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return any(data.find(b"\x22" + bytes([len(op)]) + op.encode()) >= 0 for op in RANDOM_OPS)


def graph_seed(seed: int, name: str) -> int:
    """A graph's own seed for a job: each graph's noise its own stream, all of them the job seed's."""
    return int(np.random.SeedSequence([seed, *name.encode()]).generate_state(1)[0])


def check_stop(stop: StopSignal) -> None:
    """A cancellation point in a loop over the input: raises JobCancelled once the job is stopped, counting
    no step per item (`stop.step()` counts the graphs run)."""
    if stop.requested:
        stop.step()


def session_options(threads: int) -> onnxruntime.SessionOptions:
    """Every graph's options: full graph optimization; no memory pattern (lengths change every job)."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle workers use no CPU
    return options


def providers(device: str) -> list:
    if device != "cuda":
        return ["CPUExecutionProvider"]
    # HEURISTIC: EXHAUSTIVE would benchmark convolutions again for every new length, every job.
    cuda = {"cudnn_conv_algo_search": "HEURISTIC", "arena_extend_strategy": "kSameAsRequested"}
    return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]


def open_session(path: Path, device: str, threads: int) -> onnxruntime.InferenceSession:
    try:
        session = onnxruntime.InferenceSession(str(path), session_options(threads), providers=providers(device))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped failures
        raise ModelFilesError(f"{path}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from exc
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise ModelFilesError(
            f"{path}: onnxruntime could not place it on the GPU (providers {session.get_providers()})"
        )
    return session


@dataclass
class Graph:
    """One ONNX graph and what it declares. A graph with random nodes (`stochastic`) is opened again, under
    its seed, before its first run after `reseed`."""

    name: str
    session: onnxruntime.InferenceSession | None
    ranks: dict[str, int] = field(default_factory=dict)
    path: Path | None = None
    device: str = "cpu"
    threads: int = 0
    stochastic: bool = False
    pending_seed: int | None = None  # set by `reseed`: the session to open before the next run

    @classmethod
    def load(cls, name: str, path: Path, device: str, threads: int) -> Graph:
        session = open_session(path, device, threads)
        ranks = {arg.name: len(arg.shape) for arg in session.get_inputs()}
        graph = cls(name, session, ranks, path, device, threads, stochastic=samples_noise(path))
        unknown = sorted(set(graph.ranks) - KNOWN_INPUTS[name])
        if unknown:
            raise ModelFilesError(
                f"{path}: the {name} graph takes {', '.join(unknown)}, which this worker cannot provide"
            )
        return graph

    def reseed(self, seed: int) -> None:
        """A new job: a stochastic graph's next run opens a new session under this graph's share of `seed`."""
        if self.stochastic:
            self.pending_seed = graph_seed(seed, self.name)

    def _renew(self) -> None:
        """A new session, its random nodes seeded by the pending seed (onnxruntime reads the global seed when a
        session is created; on CUDA the random kernels share one generator, which `set_seed` restarts)."""
        self.session = None  # the old session's memory goes before the new one takes its own
        onnxruntime.set_seed(self.pending_seed)
        self.session = open_session(self.path, self.device, self.threads)
        onnxruntime.set_seed(self.pending_seed)
        self.pending_seed = None

    def takes(self, name: str) -> bool:
        return name in self.ranks

    def run(self, available: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.pending_seed is not None:
            self._renew()
        feeds = {}
        for name, rank in self.ranks.items():
            if name not in available:
                raise ModelFilesError(
                    f"the {self.name} graph needs input {name}, which this bank's configuration does not provide"
                )
            value = available[name]
            feeds[name] = value.reshape(()) if rank == 0 and value.size == 1 else value
        outputs = [arg.name for arg in self.session.get_outputs()]
        return dict(zip(outputs, self.session.run(outputs, feeds), strict=True))


def frame_counts(seconds: list[float], frame_seconds: float) -> np.ndarray:
    """Integer frames per item: boundaries at round(cumulative / frame + 0.5), as DiffSinger and OpenUtau do."""
    boundaries = np.round(np.cumsum(np.asarray(seconds, dtype=np.float64)) / frame_seconds + 0.5).astype(np.int64)
    return np.diff(boundaries, prepend=np.int64(np.round(0.5)))


def resample_curve(values: np.ndarray, timestep: float, frame_seconds: float, frames: int) -> np.ndarray:
    """A curve sampled every `timestep` seconds, read at each frame: linear, held beyond its ends."""
    source = np.arange(len(values)) * timestep
    return np.interp(np.arange(frames) * frame_seconds, source, values).astype(np.float32)


def midi_to_hz(midi: np.ndarray) -> np.ndarray:
    return (440.0 * 2.0 ** ((midi - 69.0) / 12.0)).astype(np.float32)


def hz_to_midi(hz: np.ndarray) -> np.ndarray:
    return (69.0 + 12.0 * np.log2(np.maximum(hz, 1e-3) / 440.0)).astype(np.float32)


def voiced_midi(hz: np.ndarray) -> np.ndarray:
    """A pitch curve in MIDI with its unvoiced samples (0 Hz, as scores and pitch extractors write them) filled
    as DiffSinger's `interp_f0` fills them: linear in log frequency between the voiced samples around them, the
    nearest voiced value held beyond the first and last. All unvoiced: C4 (60), the pitch DiffSinger gives notes
    that are all rests."""
    voiced = hz > 0
    if not voiced.any():
        return np.full(hz.shape, 60.0, dtype=np.float32)
    midi = hz_to_midi(hz)
    index = np.arange(hz.size)
    midi[~voiced] = np.interp(index[~voiced], index[voiced], midi[voiced])
    return midi


@dataclass(frozen=True)
class Note:
    midi: float | None  # None: a rest
    seconds: float


@dataclass
class Segment:
    """One phrase to sing, with whatever the score already fixes (the rest is predicted)."""

    offset: float  # seconds from the start of the song
    phonemes: list[str]
    durations: list[float]  # seconds per phoneme
    notes: list[Note]
    words: list[int]  # phonemes per word (ph_num): word boundaries for the linguistic encoders
    f0: tuple[np.ndarray, float] | None = None  # Hz per sample, timestep
    curves: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)  # variances, gender, velocity


@dataclass(frozen=True)
class Controls:
    speaker_mix: dict[str, float]  # speaker -> weight, summing to 1 (empty for a single-speaker bank)
    gender: float  # -1..1: formant shift (the bank's key-shift embedding), positive is up (brighter)
    velocity: float  # consonant speed ratio
    steps: int
    depth: float


class Synthesizer:
    """The bank's graphs, loaded once; `render` sings one segment."""

    def __init__(self, bank: Voicebank, device: str, threads: int) -> None:
        self.bank = bank

        def load(name: str, path: Path) -> Graph:
            return Graph.load(name, path, device, threads)

        self.acoustic = load("acoustic", bank.acoustic.model("acoustic"))
        self.vocoder = load("vocoder", bank.vocoder.model)
        self.dur = self.dur_linguistic = self.pitch = self.pitch_linguistic = None
        self.variance = self.variance_linguistic = None
        if bank.dur is not None:
            self.dur_linguistic = load("dur_linguistic", bank.dur.model("linguistic"))
            self.dur = load("dur", bank.dur.model("dur"))
        if bank.pitch is not None:
            self.pitch_linguistic = load("pitch_linguistic", bank.pitch.model("linguistic"))
            self.pitch = load("pitch", bank.pitch.model("pitch"))
        needs_variance = [name for name in VARIANCES if self.acoustic.takes(name)]
        if bank.variance is not None and needs_variance:
            self.variance_linguistic = load("variance_linguistic", bank.variance.model("linguistic"))
            self.variance = load("variance", bank.variance.model("variance"))
        self.needed_curves = needs_variance

    def reseed(self, seed: int) -> None:
        """A job's seed: each graph that samples noise draws it from this seed alone (a new session before its
        first run in the job), whatever jobs ran before."""
        for graph in (self.acoustic, self.vocoder, self.dur, self.dur_linguistic, self.pitch, self.pitch_linguistic,
                      self.variance, self.variance_linguistic):  # fmt: skip
            if graph is not None:
                graph.reseed(seed)

    def speaker_embeds(self, stage: StageConfig, mix: dict[str, float], frames: int) -> np.ndarray | None:
        """The mix's embedding repeated over `frames` rows; None for a single-speaker model."""
        if stage.speaker_embeds is None:
            return None
        weights = np.array([mix.get(name, 0.0) for name in stage.speakers], dtype=np.float32)
        if not weights.any():
            weights[0] = 1.0
        row = weights @ stage.speaker_embeds
        return np.broadcast_to(row, (1, frames, row.size)).astype(np.float32)

    def _timing(self, stage: StageConfig, segment: Segment) -> tuple[list[str], np.ndarray]:
        """Tokens and their frames on this stage's grid."""
        return segment.phonemes, frame_counts(segment.durations, stage.frame_seconds)

    def _steps(self, graph: Graph, steps: int, depth: float | None) -> dict[str, np.ndarray]:
        """steps (continuous exporters) or speedup out of 1000 (legacy), and depth in the graph's type."""
        feeds: dict[str, np.ndarray] = {"steps": np.array(steps, dtype=np.int64)}
        if graph.takes("speedup"):
            if depth is not None and graph.takes("depth"):
                total = round(depth * 1000)
                speedup = max(1, total // steps)
                feeds["depth"] = np.array((total // speedup) * speedup, dtype=np.int64)
            else:
                speedup = max(1, 1000 // steps)
                while 1000 % speedup:
                    speedup -= 1
            feeds["speedup"] = np.array(speedup, dtype=np.int64)
        elif depth is not None:
            feeds["depth"] = np.array(depth, dtype=np.float32)
        return feeds

    def _linguistic(self, graph: Graph, stage: StageConfig, tokens: list[str], frames: np.ndarray, segment: Segment):
        feeds = {"tokens": stage.token_ids(tokens), "languages": stage.language_ids(tokens), "ph_dur": frames[None]}
        if graph.takes("word_div"):
            words = segment.words or _vowel_words(tokens, stage)
            bounds = np.cumsum([0, *words])
            feeds["word_div"] = np.array([words], dtype=np.int64)
            feeds["word_dur"] = np.add.reduceat(frames, bounds[:-1])[None].astype(np.int64)
        return graph.run(feeds)

    def predict_durations(self, groups: list[Group], end: float, mix: dict[str, float], stop: StopSignal) -> np.ndarray:
        """Frames per phoneme (fractional, on the timing model's grid) from the duration model; a step of `stop`."""
        stage = self.bank.dur
        tokens = [symbol for group in groups for symbol in group.phonemes]
        starts = [int(group.start / stage.frame_seconds) for group in groups] + [int(end / stage.frame_seconds)]
        midi = _fill_rests((group.midi for group in groups), stop)
        feeds = {
            "tokens": stage.token_ids(tokens),
            "languages": stage.language_ids(tokens),
            "word_div": np.array([[len(group.phonemes) for group in groups]], dtype=np.int64),
            "word_dur": np.diff(np.array(starts, dtype=np.int64))[None],
        }
        encoded = self.dur_linguistic.run(feeds)
        feeds = {
            **encoded,
            "ph_midi": np.array([[round(m) for m, g in zip(midi, groups, strict=True) for _ in g.phonemes]]),
        }
        embeds = self.speaker_embeds(stage, mix, len(tokens))  # one row per token: the duration model's grid
        if embeds is not None:
            feeds["spk_embed"] = embeds
        predicted = self.dur.run(feeds)["ph_dur_pred"][0]
        stop.step()
        return predicted

    def _predict_pitch(self, segment: Segment, controls: Controls, stop: StopSignal) -> tuple[np.ndarray, float]:
        """MIDI per frame on the pitch model's grid, from the notes."""
        stage = self.bank.pitch
        tokens, frames = self._timing(stage, segment)
        total = int(frames.sum())
        encoded = self._linguistic(self.pitch_linguistic, stage, tokens, frames, segment)
        notes = segment.notes
        note_frames = _fit(frame_counts([note.seconds for note in notes], stage.frame_seconds), total, stop)
        midi = _fill_rests((note.midi for note in notes), stop)
        feeds = {
            **encoded,
            "ph_dur": frames[None],
            "note_midi": np.array([midi], dtype=np.float32),
            "note_rest": np.array([[note.midi is None for note in notes]]),
            "note_dur": note_frames[None],
            "note_glide": np.zeros((1, len(notes)), dtype=np.int64),
            "pitch": np.full((1, total), 60.0, dtype=np.float32),
            "expr": np.ones((1, total), dtype=np.float32),
            "retake": np.ones((1, total), dtype=bool),
            **self._steps(self.pitch, controls.steps, None),
        }
        embeds = self.speaker_embeds(stage, controls.speaker_mix, total)
        if embeds is not None:
            feeds["spk_embed"] = embeds
        return self.pitch.run(feeds)["pitch_pred"][0], stage.frame_seconds

    def _note_pitch(self, segment: Segment, frame_seconds: float, frames: int, stop: StopSignal) -> np.ndarray:
        """Without a pitch model: each note's pitch held over its time, rests taking their neighbours'."""
        midi = _fill_rests((note.midi for note in segment.notes), stop)
        counts = _fit(frame_counts([note.seconds for note in segment.notes], frame_seconds), frames, stop)
        return np.repeat(np.asarray(midi, dtype=np.float32), counts)

    def render(self, segment: Segment, controls: Controls, stop: StopSignal) -> np.ndarray:
        """Waveform (float32, the bank's sample rate) of one segment; a step of `stop` between graphs."""
        bank, acoustic = self.bank, self.bank.acoustic
        tokens, frames = self._timing(acoustic, segment)
        total = int(frames.sum())
        frame_seconds = acoustic.frame_seconds
        # Pitch in MIDI on the acoustic grid: the score's f0, the pitch model's, or the notes'. The score's
        # reaches the acoustic model and vocoder as given (0 Hz unvoiced, as DiffSinger feeds them) and the
        # variance model with its unvoiced frames interpolated, as DiffSinger's variance inference does.
        if segment.f0 is not None:
            values, timestep = segment.f0
            f0 = resample_curve(values, timestep, frame_seconds, total)[None]
            midi = resample_curve(voiced_midi(values), timestep, frame_seconds, total)
        else:
            if self.pitch is not None:
                predicted, grid = self._predict_pitch(segment, controls, stop)
                midi = resample_curve(predicted, grid, frame_seconds, total)
            else:
                midi = self._note_pitch(segment, frame_seconds, total, stop)
            f0 = midi_to_hz(midi)[None]
        stop.step()
        feeds: dict[str, np.ndarray] = {
            "tokens": acoustic.token_ids(tokens),
            "languages": acoustic.language_ids(tokens),
            "durations": frames[None],
            "f0": f0,
            "gender": self._curve(segment, "gender", controls.gender, total),
            "velocity": self._curve(segment, "velocity", controls.velocity, total),
            **self._variances(segment, controls, midi, total),
            **self._steps(
                self.acoustic, controls.steps, min(controls.depth, bank.max_depth) if bank.variable_depth else None
            ),
        }
        embeds = self.speaker_embeds(acoustic, controls.speaker_mix, total)
        if embeds is not None:
            feeds["spk_embed"] = embeds
        mel = self.acoustic.run(feeds)["mel"]
        stop.step()
        if bank.mel.mel_base != bank.vocoder.mel.mel_base:
            mel = mel * np.float32(LN_10 if bank.mel.mel_base == "10" else 1 / LN_10)
        waveform = self.vocoder.run({"mel": mel.astype(np.float32), "f0": f0})["waveform"][0]
        stop.step()
        return waveform

    def _curve(self, segment: Segment, name: str, default: float, frames: int) -> np.ndarray:
        if name in segment.curves:
            values, timestep = segment.curves[name]
            return resample_curve(values, timestep, self.bank.acoustic.frame_seconds, frames)[None]
        return np.full((1, frames), default, dtype=np.float32)

    def _variances(self, segment: Segment, controls: Controls, midi: np.ndarray, frames: int) -> dict[str, np.ndarray]:
        """The variance curves the acoustic graph takes: the score's, else the variance model's."""
        given = {name: self._curve(segment, name, 0.0, frames) for name in self.needed_curves if name in segment.curves}
        missing = [name for name in self.needed_curves if name not in given]
        if not missing:
            return given
        if self.variance is None:
            raise InputError(
                f"ds: this bank's acoustic model takes {', '.join(missing)} and it has no variance model "
                "(dsvariance/): give each as a curve in the score"
            )
        stage = self.bank.variance
        tokens, stage_frames = self._timing(stage, segment)
        total = int(stage_frames.sum())
        encoded = self._linguistic(self.variance_linguistic, stage, tokens, stage_frames, segment)
        predicted = [name for name in VARIANCES if stage.flag(f"predict_{name}")]
        feeds = {
            **encoded,
            "ph_dur": stage_frames[None],
            "pitch": resample_curve(midi, self.bank.acoustic.frame_seconds, stage.frame_seconds, total)[None],
            **{name: np.zeros((1, total), dtype=np.float32) for name in predicted},
            "retake": np.ones((1, total, len(predicted)), dtype=bool),
            **self._steps(self.variance, controls.steps, None),
        }
        embeds = self.speaker_embeds(stage, controls.speaker_mix, total)
        if embeds is not None:
            feeds["spk_embed"] = embeds
        outputs = self.variance.run(feeds)
        for name in missing:
            if f"{name}_pred" not in outputs:
                raise ModelFilesError(f"the variance graph does not predict {name}, which the acoustic graph takes")
            curve = resample_curve(
                outputs[f"{name}_pred"][0], stage.frame_seconds, self.bank.acoustic.frame_seconds, frames
            )
            given[name] = curve[None]
        return given


def _fill_rests(midi: Iterable[float | None], stop: StopSignal) -> list[float]:
    """Rests take the pitch of the nearest note (left half from the left, right half from the right; a tie
    from the left); 60 when there is no note. One pass: a run of rests is filled when the note after it comes."""
    filled: list[float] = []
    previous: float | None = None  # the last note's pitch
    rests = 0  # rests since it
    for value in midi:
        check_stop(stop)
        if value is None:
            rests += 1
            continue
        from_previous = (rests + 1) // 2 if previous is not None else 0
        filled += [previous] * from_previous + [value] * (rests - from_previous + 1)
        previous, rests = value, 0
    filled += [60.0 if previous is None else previous] * rests
    return filled


def _fit(counts: np.ndarray, total: int, stop: StopSignal) -> np.ndarray:
    """Note frames summing to the phonemes' frames: the difference goes to the last notes (OpenUtau's rule)."""
    counts = counts.copy()
    counts[-1] += total - counts.sum()
    index = counts.size - 1
    while counts[index] < 0 and index > 0:
        check_stop(stop)
        counts[index - 1] += counts[index]
        counts[index] = 0
        index -= 1
    return counts


def _vowel_words(tokens: list[str], stage: StageConfig) -> list[int]:
    """Word sizes for a score without ph_num: a word starts at each vowel (its folder's dsdict says which;
    SP and AP count), the onset consonants joining the word before, as DiffSinger's ph_num does."""
    vowels = stage.dictionary.vowels if stage.dictionary is not None else frozenset(SILENCES)
    starts = [index for index, symbol in enumerate(tokens) if index and symbol in vowels]
    bounds = [0, *starts, len(tokens)]
    return [end - start for start, end in zip(bounds[:-1], bounds[1:], strict=True) if end > start]
