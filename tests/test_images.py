"""What an image leaves out of site-packages (handlers/<worker>/image-prune.txt) is never loaded: each of the
worker's tiny models runs its contract job, and no module it imported (nor shared library it mapped) lies in a
pruned path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared import prune, workers
from shared.prune import pruned_paths
from tests.support import REPO

pytestmark = pytest.mark.tiny

PRUNING = [w for w in workers.worker_names() if (workers.HANDLERS / w / "image-prune.txt").is_file()]
SITE_PACKAGES = next(Path(path) for path in sys.path if path.endswith("site-packages"))

LOADED = """
import json, sys
from pathlib import Path
from shared import workers
from shared.pipeline import Worker
from shared.settings import Settings

worker, volume, outputs = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
fixtures = workers.module(worker, "fixtures")
for tiny in fixtures.TINY_MODELS:
    settings = Settings(volume_root=volume, model_id=tiny.model_id, output_dir=outputs)
    result = Worker(workers.adapter_class(worker), settings).run({"id": "p", "input": fixtures.CONTRACT.job_input})
    assert "error" not in result, (tiny.model_id, result)
files = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
# Shared libraries too: a module's extension may load a library no Python module names.
files += [line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if line.count(" ") >= 5]
print(json.dumps(sorted({str(Path(name).resolve()) for name in files if name and name.startswith("/")})))
"""


@pytest.mark.parametrize("worker", PRUNING)
def test_nothing_a_worker_loads_is_pruned_from_its_image(worker, tiny_volume, tmp_path):
    removed = [path.resolve() for path in pruned_paths(workers.HANDLERS / worker / "image-prune.txt", SITE_PACKAGES)]
    assert removed
    done = subprocess.run(
        [sys.executable, "-c", LOADED, worker, str(tiny_volume.ensure(worker)), str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = [Path(name) for name in json.loads(done.stdout.strip().splitlines()[-1])]
    pruned = [str(file) for file in loaded if any(file.is_relative_to(path) for path in removed)]
    assert not pruned, f"{worker} loads what its image prunes: {pruned[:5]}"


def test_a_prune_pattern_that_matches_nothing_stops_the_build(tmp_path):
    (tmp_path / "stale.txt").write_text("# moved by an update\nno_such_package/*/ except kept\n")
    with pytest.raises(SystemExit, match="no_such_package/\\*/ matches nothing"):
        pruned_paths(tmp_path / "stale.txt", SITE_PACKAGES)


def test_paths_two_lines_match_are_pruned_once(tmp_path):
    site = tmp_path / "site"
    (site / "pkg" / "sub").mkdir(parents=True)
    for name in ("pkg/a.pyx", "pkg/sub/b.pyx", "pkg/c.py"):
        (site / name).touch()
    (tmp_path / "prune.txt").write_text("pkg/a.*\npkg/*.pyx\npkg/sub/\npkg/sub/*.pyx\n")
    prune.main([str(tmp_path / "prune.txt"), str(site)])
    assert sorted(path.name for path in site.rglob("*")) == ["c.py", "pkg"]
