"""Run a worker on its tiny model from a local volume: once on its test_input.json, or serving.

    python scripts/run_tiny.py <worker> --volume .volume                    # one job, audio in ./outputs
    python scripts/run_tiny.py <worker> --volume .volume --rp_serve_api     # local API server

Sets VOLUME_ROOT, MODEL_ID (the worker's first tiny model) and OUTPUT_DIR unless they are set, then
runs the worker's entry point, `python -m handlers.<worker>`, with the remaining arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared import workers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("worker", choices=workers.worker_names())
    parser.add_argument("--volume", type=Path, default=Path(".volume"))
    args, worker_args = parser.parse_known_args()
    tiny_model = workers.module(args.worker, "fixtures").TINY_MODELS[0]
    os.environ.setdefault("VOLUME_ROOT", str(args.volume))
    os.environ.setdefault("MODEL_ID", tiny_model.model_id)
    os.environ.setdefault("OUTPUT_DIR", "outputs")
    os.chdir(REPO)
    os.execv(sys.executable, [sys.executable, "-m", f"handlers.{args.worker}", *worker_args])


if __name__ == "__main__":
    main()
