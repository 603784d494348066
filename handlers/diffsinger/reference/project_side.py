"""The project's side of the cross-check: the worker sings the same job on the same tiny bank, every onnxruntime
run recorded (recorder.py). Runs in the main venv, from the repository root:

    .venv/bin/python handlers/diffsinger/reference/project_side.py VOLUME MODEL_ID JOB_JSON OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from handlers.diffsinger.adapter import DiffSinger  # noqa: E402
from handlers.diffsinger.reference import recorder  # noqa: E402
from shared.pipeline import Worker  # noqa: E402
from shared.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("volume", type=Path)
    parser.add_argument("model_id")
    parser.add_argument("job", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    recorder.install(args.out, args.volume / "diffsinger" / "voicebanks" / args.model_id)
    job = json.loads(args.job.read_text())
    with tempfile.TemporaryDirectory() as outputs:
        worker = Worker(DiffSinger, Settings(volume_root=args.volume, model_id=args.model_id, output_dir=outputs))
        result = worker.run({"id": "reference", "input": {"return_base64": True, **job}})
    if "error" in result:
        raise SystemExit(f"the worker failed: {result['error']}")


if __name__ == "__main__":
    main()
