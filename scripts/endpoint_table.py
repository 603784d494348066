"""The README's tables rendered from the endpoint specs (deploy/<worker>.json): the endpoint settings, and where
each worker's weights come from (the Model setting and the checkpoints it serves alone, or a network volume).

    python scripts/endpoint_table.py            # print them
    python scripts/endpoint_table.py --write    # make endpoint-table: replace them in README.md
    python scripts/endpoint_table.py --check    # exit 1 when README.md's tables differ from the specs

Each table sits between its two marker comments in README.md; tests/test_deploy.py fails when one is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DEPLOY = REPO / "deploy"
START = "<!-- endpoint-table: generated from deploy/*.json by make endpoint-table -->"
END = "<!-- endpoint-table: end -->"
WEIGHTS_START = "<!-- weights-table: generated from deploy/*.json by make endpoint-table -->"
WEIGHTS_END = "<!-- weights-table: end -->"
HEADER = (
    "| Worker | GPU pools | GPU memory | Container disk | Execution timeout | Weights from | `MAX_CONCURRENCY` |\n"
    "|---|---|---|---|---|---|---|"
)


def specs(folder: Path = DEPLOY) -> dict[str, dict]:
    """Every endpoint spec, by worker."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def weights(spec: dict) -> str:
    cache = spec.get("model_cache")
    if cache:
        return f"the Model setting, `{cache['model']}` (no volume)"
    return f"a network volume: {spec['volume']['why']}"


def row(spec: dict) -> str:
    gpu = spec["gpu"]
    pools = ", ".join(f"`{pool}`" for pool in gpu["pools"])
    count = f" x {gpu['count']}" if gpu.get("count", 1) != 1 else ""
    timeout = f"{spec['execution_timeout_s']} s"
    if spec.get("execution_timeout_note"):
        timeout += f", {spec['execution_timeout_note']}"
    cells = [
        f"`{spec['worker']}`",
        f"{pools}{count}",
        gpu["memory"],
        f"{spec['container_disk_gb']} GB",
        timeout,
        weights(spec),
        spec["env"].get("MAX_CONCURRENCY", "1"),
    ]
    return "| " + " | ".join(cells) + " |"


def table(folder: Path = DEPLOY) -> str:
    return "\n".join([HEADER, *(row(spec) for spec in specs(folder).values())])


def weights_table(folder: Path = DEPLOY) -> str:
    lines = ["| Worker | Weights from | Checkpoints the Model setting serves alone |", "|---|---|---|"]
    for worker, spec in specs(folder).items():
        cache = spec.get("model_cache")
        if cache:
            served = ", ".join(f"`{repo}`" for repo in [cache["model"], *cache["also"]])
            note = f" ({cache['note']})" if cache.get("note") else ""
            lines.append(f"| `{worker}` | the Model setting, no volume | {served}{note} |")
        else:
            lines.append(f"| `{worker}` | a network volume | none: {spec['volume']['why']} |")
    return "\n".join(lines)


BLOCKS = ((START, END, table), (WEIGHTS_START, WEIGHTS_END, weights_table))


def readme_table(text: str, start: str = START, end: str = END) -> str:
    """The table between a pair of markers in a README's text."""
    if start not in text or end not in text:
        raise ValueError(f"README.md lacks the markers {start} ... {end}")
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def replace_table(text: str, start: str, end: str, rendered: str) -> str:
    before, rest = text.split(start, 1)
    return f"{before}{start}\n{rendered}\n{end}{rest.split(end, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="replace the table in README.md")
    action.add_argument("--check", action="store_true", help="exit 1 when README.md's table is stale")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        print("\n\n".join(render() for _, _, render in BLOCKS))
        return 0
    text = README.read_text()
    stale = [start for start, end, render in BLOCKS if readme_table(text, start, end) != render()]
    if args.check:
        if stale:
            print("README.md's tables differ from deploy/*.json: run make endpoint-table", file=sys.stderr)
            return 1
        return 0
    for start, end, render in BLOCKS:
        text = replace_table(text, start, end, render())
    if stale:
        README.write_text(text)
        print(f"README.md: {len(stale)} table(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
