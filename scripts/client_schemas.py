"""Write the client's copy of every worker's request schema (audio_client/workers.json): the page builds its forms
from it, and the client installs without the workers' code (`make schemas`; a unit test fails when it is stale).

    python scripts/client_schemas.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import workers  # noqa: E402
from shared.schemas import JobRequest  # noqa: E402

SCHEMAS = Path(__file__).resolve().parents[1] / "audio_client" / "workers.json"


def worker_schemas() -> list[dict[str, Any]]:
    """Each worker of handlers/*/: its request's JSON Schema (pydantic's), the fields every worker shares, and
    the example request of its test_input.json."""
    return [
        {
            "name": name,
            "common_fields": list(JobRequest.model_fields),
            "schema": workers.request_model(name).model_json_schema(),
            "example": json.loads((workers.HANDLERS / name / "test_input.json").read_text())["input"],
        }
        for name in workers.worker_names()
    ]


def render() -> str:
    return json.dumps(worker_schemas(), indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from the workers' models")
    args = parser.parse_args(argv)
    if args.check:
        stale = not SCHEMAS.is_file() or SCHEMAS.read_text() != render()
        if stale:
            print(f"{SCHEMAS} is stale: run make schemas", file=sys.stderr)
        return 1 if stale else 0
    SCHEMAS.write_text(render())
    print(f"wrote {SCHEMAS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
