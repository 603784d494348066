"""The reference's side of the cross-check: diffsinger-utau 0.3.8 sings a .ds segment on a tiny bank while every
onnxruntime run is recorded (recorder.py). Runs in the reference's own venv (`make test-reference` builds it):

    .cache/venv-reference-diffsinger/bin/python handlers/diffsinger/reference/reference_side.py \\
        BANK DS_JSON OUT [--replay DIR]

DS_JSON holds {"ds": <segment>, "speaker": <name or null>, "steps": <int>, "gender": <float>}. The segment's
ph_dur is used as given (the reference's full pipeline would predict it: its duration step is replaced by the
score's durations, as the project does for a .ds score). A bank without dspitch/ (the legacy layout) runs the
acoustic model and the vocoder alone, on the segment's f0_seq.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recorder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bank", type=Path)
    parser.add_argument("job", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--replay", type=Path)
    args = parser.parse_args()
    recorder.install(args.out, args.bank, args.replay)

    from diffsinger_utau.voice_bank.commons.ds_reader import DSReader
    from diffsinger_utau.voice_bank.commons.voice_bank_reader import VoiceBankReader
    from diffsinger_utau.voice_bank.pred_acoustic import PredAcoustic
    from diffsinger_utau.voice_bank.pred_all import PredAll
    from diffsinger_utau.voice_bank.pred_vocoder import PredVocoder

    # character.yaml's portrait_opacity and singer_type are optional in OpenUtau (and absent from the tiny banks'):
    # the reference's reader needs them, and nothing it reads there reaches a graph.
    VoiceBankReader.CharacterReader = lambda *_: None
    job = json.loads(args.job.read_text())
    ds = DSReader.DSSection({"text": "", "lang": job["language"], **job["ds"]})
    if (args.bank / "dspitch").is_dir():
        pipeline = PredAll(args.bank)
        pipeline.pred_duration.predict = lambda section, **_: np.array(section["ph_dur"].split(), dtype=np.float64)
        pipeline.predict_full_pipeline(
            ds, lang=job["language"], speaker=job["speaker"], pitch_steps=job["steps"], variance_steps=job["steps"],
            acoustic_steps=job["steps"], gender=job["gender"], output_dir=str(args.out / "files"),
            save_intermediate=False,
        )  # fmt: skip
    else:
        acoustic = PredAcoustic(VoiceBankReader.DSAcoustic(args.bank / "dsconfig.yaml"))
        mel = acoustic.predict(ds, speaker=job["speaker"], steps=job["steps"], gender=job["gender"])
        vocoder = PredVocoder(VoiceBankReader.DSVocoder(args.bank / "dsvocoder" / "vocoder.yaml"))
        f0 = np.array(ds["f0_seq"].split(), dtype=np.float32)
        vocoder.predict(mel, f0[: mel.shape[1]])


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # a graph's failure is in calls.json, for the test to judge; anything else is not
        calls = sys.argv[3] and Path(sys.argv[3]) / "calls.json"
        if not (calls.exists() and "error" in json.loads(calls.read_text())[-1]):
            raise
        print(f"stopped at a failed graph run: {exc}", file=sys.stderr)
