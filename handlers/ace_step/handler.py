"""RunPod entry point of the ACE-Step 1.5 worker.

python handlers/ace_step/handler.py               # runs test_input.json once
python -m handlers.ace_step --rp_serve_api        # local API server (/run, /runsync, /status)
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from handlers.ace_step.ace_step import AceStep  # noqa: E402
from shared.pipeline import serve  # noqa: E402


def main() -> None:
    serve(AceStep, test_input=Path(__file__).with_name("test_input.json"))


if __name__ == "__main__":
    main()
