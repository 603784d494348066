"""Build random-weight checkpoints of the real architectures, in the real on-disk layout, offline.

    python scripts/build_tiny_models.py --volume .volume                 # every worker's tiny models
    python scripts/build_tiny_models.py --volume .volume <worker>        # one worker's
    python scripts/build_tiny_models.py --volume .volume-bench --size bench <worker>

Each worker declares its models in handlers/<worker>/fixtures.py (TINY_MODELS); each is written to
<volume>/<worker>/<MODEL_ID>, exactly where the worker resolves MODEL_ID, so tests and the demo load
it through the production code. Only the workers named are imported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import workers  # noqa: E402
from shared.testing import SIZES  # noqa: E402
from shared.volume import make_readable  # noqa: E402


def build(volume: Path, worker: str, size: str = "tiny") -> list[Path]:
    """Build every model the worker's fixtures declare; returns their folders."""
    import torch

    torch.manual_seed(0)
    built = []
    for tiny in workers.module(worker, "fixtures").TINY_MODELS:
        target = workers.catalog(worker).model_folder(volume, tiny.model_id_for(size))
        tiny.build(target, size)
        built.append(target)
        print(f"built {tiny.model_id_for(size)} at {target}")
    make_readable(volume / worker)  # safetensors.save_file writes 0600; the images run as uid 1000
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = workers.worker_names()
    parser.add_argument("workers", nargs="*", metavar="WORKER", help=f"some of {', '.join(names)}; default: all")
    parser.add_argument("--volume", type=Path, default=Path(".volume"), help="volume root to write into")
    parser.add_argument("--size", choices=SIZES, default="tiny")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.workers) - set(names))
    if unknown:
        parser.error(f"unknown worker(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    for worker in args.workers or names:
        build(args.volume, worker, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
