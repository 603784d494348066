"""The RunPod Hub asks for a handler.py (in .runpod/ or the root): this listing's worker is VoxCPM's, whose image
runs `python -m handlers.voxcpm` (.runpod/Dockerfile). Running this file from a checkout does the same."""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    runpy.run_module("handlers.voxcpm", run_name="__main__", alter_sys=True)
