"""Estimate a handler image's size without a Docker engine.

    python scripts/measure_image_size.py <worker> [--work /tmp/image-size]

Downloads the Linux x86_64 / CPython 3.11 wheels the worker's Dockerfile installs from PyPI (its lock
files, handlers/<worker>/requirements.lock and requirements-nodeps.lock, hashes checked; torch's PyPI
wheel is the CUDA build), installs them into a folder the way the Dockerfile does (no bytecode; triton
removed unless --with-triton, as the default build does),
and prints the installed size and its gzip-compressed size (what a registry stores and a RunPod host
downloads), plus the slim Python base, to compare with the 5 GB cap.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared import workers  # noqa: E402

# python:3.11-slim-bookworm, linux/amd64, as published (uncompressed, compressed).
BASE_IMAGE_MB = (130, 45)
# Debian bookworm's glibc is 2.36: every manylinux tag up to it installs there.
_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
PLATFORM_ARGS = [*(f"--platform={tag}" for tag in _PLATFORMS), "--python-version=3.11", "--only-binary=:all:"]
TRITON = ("triton*",)
TORCHAUDIO_EXTENSION = ("torchaudio/lib/*.so",)


def _pip(*args: str) -> None:
    # Only PyPI, as in the image build: no local wheel folders or constraints from this machine's
    # pip configuration (a CPU torch on local disk must not stand in for the CUDA build).
    env = {name: value for name, value in os.environ.items() if not name.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env)


def _tree_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


class _CountingSink:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _gzip_bytes(folder: Path) -> int:
    sink = _CountingSink()
    with (
        gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6) as compressed,
        tarfile.open(fileobj=compressed, mode="w|") as archive,
    ):
        archive.add(folder, arcname=".")
    return sink.bytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("worker", choices=workers.worker_names())
    parser.add_argument("--work", type=Path, default=Path("/tmp/image-size"))
    parser.add_argument("--with-triton", action="store_true", help="as --build-arg WITH_TRITON=1 where offered")
    args = parser.parse_args(argv)
    folder = workers.HANDLERS / args.worker
    locks = [folder / name for name in ("requirements.lock", "requirements-nodeps.lock") if (folder / name).is_file()]
    wheels, target = args.work / "wheels", args.work / args.worker
    shutil.rmtree(target, ignore_errors=True)
    for lock in locks:
        _pip("download", "-q", "--no-deps", "--require-hashes", "-r", str(lock), "-d", str(wheels), *PLATFORM_ARGS)
        _pip(
            "install", "-q", "--no-compile", "--no-index", "--find-links", str(wheels), "--no-deps",
            "--require-hashes", "--target", str(target), "-r", str(lock), *PLATFORM_ARGS,
        )  # fmt: skip
    removed = TORCHAUDIO_EXTENSION + (() if args.with_triton else TRITON)
    for pattern in removed:
        for path in target.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    installed_mb = _tree_bytes(target) / 1e6
    print(f"{args.worker}: installed packages {installed_mb:,.0f} MB; compressing...", flush=True)
    compressed_mb = _gzip_bytes(target) / 1e6
    total, total_compressed = installed_mb + BASE_IMAGE_MB[0], compressed_mb + BASE_IMAGE_MB[1]
    print(f"{args.worker}: packages {installed_mb:,.0f} MB ({compressed_mb:,.0f} MB gzip)")
    print(f"{args.worker}: image ~{total:,.0f} MB uncompressed, ~{total_compressed:,.0f} MB compressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
