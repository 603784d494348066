"""Write each image's lock file: every package it installs, pinned, with hashes, for Linux x86_64 / CPython 3.11.

    python scripts/lock_requirements.py            # every worker
    python scripts/lock_requirements.py <worker>   # one

Inputs: shared/requirements.txt and handlers/<worker>/requirements.txt (and requirements-image.txt, what
only the image installs), under shared/constraints.txt (handlers/<worker>/requirements-nodeps.txt, when
present, is locked alone, without its dependencies).
Output: handlers/<worker>/requirements.lock (and requirements-nodeps.lock), resolved by uv against PyPI;
the image installs them with `pip install --no-deps --require-hashes`, so a rebuild next month installs
the very same files. The first line records a digest of the inputs: tests/test_layout.py fails when a lock
is stale. Needs PyPI (not the local CPU torch): torch's PyPI wheel is the CUDA build the images run.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared import workers  # noqa: E402

PLATFORM = ("--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28")  # Debian bookworm: glibc 2.36
SHARED_INPUTS = (REPO / "shared" / "requirements.txt", REPO / "shared" / "constraints.txt")


def lock_inputs(worker: str) -> dict[str, tuple[list[Path], list[Path]]]:
    """Each lock file of a worker: (the requirement files it resolves, the constraint files it obeys)."""
    folder = workers.HANDLERS / worker
    shared_requirements, constraints = SHARED_INPUTS
    requirements = [shared_requirements, folder / "requirements.txt"]
    if (folder / "requirements-image.txt").is_file():  # what only the image installs (a GPU's libraries)
        requirements.append(folder / "requirements-image.txt")
    locks = {"requirements.lock": (requirements, [constraints])}
    if (folder / "requirements-nodeps.txt").is_file():
        locks["requirements-nodeps.lock"] = ([folder / "requirements-nodeps.txt"], [constraints])
    return locks


def inputs_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def header(paths: list[Path]) -> str:
    names = ", ".join(path.relative_to(REPO).as_posix() for path in paths)
    return (
        f"# inputs-sha256: {inputs_digest(paths)}\n"
        f"# Made by scripts/lock_requirements.py from {names}; do not edit.\n"
        "# Installed by the image with: pip install --no-deps --require-hashes -r <this file>\n"
    )


def lock(worker: str) -> list[Path]:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not installed: make venv installs it (requirements-dev.txt)")
    written = []
    for name, (requirements, constraints) in lock_inputs(worker).items():
        command = [uv, "pip", "compile", *map(str, requirements), "--generate-hashes", "--no-header", *PLATFORM]
        command += [arg for path in constraints for arg in ("-c", str(path))]
        command += ["--index-url", "https://pypi.org/simple", "--quiet"]
        if name == "requirements-nodeps.lock":
            command.append("--no-deps")
        resolved = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO).stdout
        target = workers.HANDLERS / worker / name
        target.write_text(header([*requirements, *constraints]) + resolved)
        written.append(target)
        print(f"locked {target.relative_to(REPO)}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workers", nargs="*", metavar="WORKER", help="default: every worker")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.workers) - set(workers.worker_names()))
    if unknown:
        parser.error(f"unknown worker(s) {', '.join(unknown)}")
    for worker in args.workers or workers.worker_names():
        lock(worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
