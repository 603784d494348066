"""Remove from an image's site-packages what its worker never loads, as handlers/<worker>/image-prune.txt says.

    python prune.py handlers/<worker>/image-prune.txt <site-packages>

A line is a glob relative to site-packages, optionally followed by `except` and the names among its
matches to keep: `transformers/models/*/ except auto t5` removes every model's code but those two. A glob
that matches nothing stops the build: a library update moved the files, and the list needs a look.
Standalone (the image runs it before shared/ is copied in); tests/test_images.py checks that nothing a
worker's tiny models load lies in what its image removes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def rules(text: str) -> list[tuple[str, frozenset[str]]]:
    found = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, _, kept = line.partition(" except ")
        found.append((pattern.strip(), frozenset(kept.split())))
    return found


def pruned_paths(prune_file: Path, site_packages: Path) -> list[Path]:
    removed = []
    for pattern, kept in rules(prune_file.read_text()):
        matches = sorted(site_packages.glob(pattern))
        if not matches:
            raise SystemExit(f"{prune_file}: {pattern} matches nothing in {site_packages}")
        removed += [path for path in matches if path.name not in kept and path not in removed]
    return removed


def main(argv: list[str]) -> None:
    prune_file, site_packages = Path(argv[0]), Path(argv[1])
    removed = pruned_paths(prune_file, site_packages)
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():  # not inside a folder an earlier line removed
            path.unlink()
    print(f"pruned {len(removed)} paths listed by {prune_file.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
