"""What `make demo`, a newcomer's first command, prints: the worker's own log lines and the result."""

import json
import re
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.integration


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| [A-Z]+ +\| job \S+ \| ")


def test_the_demo_prints_the_jobs_own_lines_and_its_result(tmp_path):
    """`make demo`: building the default worker's tiny models, then one job. No library noise (torchao's CUDA kernels
    on a CPU build of torch, pytree deprecations, MusicGen's token-id check, progress bars) and no blank lines."""
    build = [sys.executable, "scripts/build_tiny_models.py", "--volume", str(tmp_path), "musicgen"]
    built = subprocess.run(build, cwd=REPO, capture_output=True, text=True, check=True)
    assert built.stderr == "" and all(line.startswith("built tiny-random/") for line in built.stdout.splitlines())
    run = [sys.executable, str(REPO / "scripts" / "run_tiny.py"), "musicgen", "--volume", str(tmp_path)]
    done = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=True)
    noise = [line for line in done.stderr.splitlines() if not LOG_LINE.match(line)]
    assert noise == []
    assert json.loads(done.stdout)["outputs"][0]["duration_seconds"] > 0
