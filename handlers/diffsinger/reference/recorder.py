"""A recording wrapper around onnxruntime.InferenceSession.run, the same on both sides of the cross-check.

Imported by the project's side (the main venv) and by the reference's (its own venv, with onnxruntime 1.16), so
it needs numpy and onnxruntime only. Every graph call's feeds (and outputs) are saved to
<out>/<index>-<graph>.in.npz / .out.npz, the graph named by its file's path under the bank, e.g.
`dspitch/pitch.onnx` becomes `dspitch.pitch`. With `replay`, a folder the other side recorded, each call's
outputs are replaced by the recorded outputs of the same graph's same call (by output name), so that a graph's
noise, drawn in-graph and seeded differently on each side, does not make the next graph's inputs differ.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime


def graph_name(model_path: str, bank: Path) -> str:
    path = Path(model_path).resolve()
    try:
        relative = path.relative_to(bank.resolve())
    except ValueError:  # a shared vocoder outside the bank
        relative = Path("vocoder") / path.name
    return ".".join(relative.with_suffix("").parts)


def install(out: Path, bank: Path, replay: Path | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    calls: Counter[str] = Counter()
    log: list[dict] = []
    original = onnxruntime.InferenceSession.run

    def run(self, output_names, input_feed, run_options=None):
        name = graph_name(self._model_path, bank)
        index = calls[name]
        calls[name] += 1
        stem = f"{name}.{index}"
        np.savez(out / f"{stem}.in.npz", **{key: np.asarray(value) for key, value in input_feed.items()})
        names = output_names or [arg.name for arg in self.get_outputs()]
        try:
            outputs = original(self, names, input_feed, run_options)
        except Exception as exc:  # recorded: a graph the reference feeds wrongly fails in onnxruntime
            log.append({"graph": name, "call": index, "error": f"{type(exc).__name__}: {exc}"})
            (out / "calls.json").write_text(json.dumps(log, indent=1))
            raise
        replayed = False
        if replay is not None and (replay / f"{stem}.out.npz").exists():
            with np.load(replay / f"{stem}.out.npz") as recorded:
                if set(names) <= set(recorded.files):
                    outputs = [recorded[key] for key in names]
                    replayed = True
        np.savez(out / f"{stem}.out.npz", **dict(zip(names, outputs, strict=True)))
        log.append({"graph": name, "call": index, "replayed": replayed})
        (out / "calls.json").write_text(json.dumps(log, indent=1))
        return outputs

    onnxruntime.InferenceSession.run = run
