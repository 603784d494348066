"""The one-folder rule: what every worker folder holds, and what the shared files say about each worker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared import workers
from shared.settings import Mp3Settings, S3Settings, Settings, variables
from tests.support import REPO

pytestmark = pytest.mark.unit

WORKERS = workers.worker_names()
INSTALL_INPUTS = ("requirements-nodeps.lock", "image-prune.txt", "requirements-git.txt")


def _requirements(path: Path) -> list[str]:
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def _pins(path: Path) -> dict[str, str | None]:
    pins = {}
    for line in _requirements(path):
        if line.startswith("--hash") or line == "\\":
            continue
        name, _, version = line.rstrip(" \\").partition("==")
        pins[re.sub(r"[-_.]+", "-", name.lower())] = version or None
    return pins


def tree_paths(text: str) -> set[str]:
    """Every folder in a document's "## Tree" drawing, as a path relative to the tree's root."""
    tree = text.split("## Tree", 1)[1].split("```", 2)[1]
    paths, stack = set(), []
    for line in tree.splitlines():
        match = re.search(r"(?:├── |└── )(\S+)/", line)
        if not match:
            continue
        depth = match.start() // 4
        stack = stack[:depth] + [match.group(1)]
        paths.add("/".join(stack))
    return paths


def layout_tree_paths() -> set[str]:
    return tree_paths((REPO / "network_volume_layout.md").read_text())


@pytest.mark.parametrize("worker", WORKERS)
def test_every_worker_folder_holds_the_standard_files(worker):
    folder = workers.HANDLERS / worker
    missing = [name for name in workers.STANDARD_FILES if not (folder / name).is_file()]
    assert not missing, f"handlers/{worker} lacks {', '.join(missing)}"
    assert json.loads((folder / "test_input.json").read_text())["input"]


def test_the_standard_file_check_fails_for_a_folder_that_lacks_one(tmp_path, monkeypatch):
    (tmp_path / "newmodel").mkdir()
    (tmp_path / "newmodel" / "__init__.py").write_text("")
    monkeypatch.setattr(workers, "HANDLERS", tmp_path)
    assert workers.worker_names() == ["newmodel"]
    with pytest.raises(AssertionError, match="handlers/newmodel lacks __main__.py, adapter.py"):
        test_every_worker_folder_holds_the_standard_files("newmodel")


@pytest.mark.parametrize("worker", WORKERS)
def test_catalog_is_the_workers_and_appears_in_the_volume_layout(worker):
    catalog = workers.catalog(worker)
    assert catalog.worker == worker
    assert not catalog.repositories or catalog.repositories[0] == catalog.default_model_id
    folders = [*catalog.folders(), catalog.models_root()]
    missing = [folder for folder in folders if folder not in layout_tree_paths()]
    assert not missing, f"network_volume_layout.md's tree lacks {', '.join(missing)}"


def test_the_layout_parser_reads_nested_folders():
    drawing = "## Tree\n```\n/v/\n├── a/   note\n│   └── b/\n│       ├── c/\n│       └── file.json\n└── d/\n```\n"
    assert tree_paths(drawing) == {"a", "a/b", "a/b/c", "d"}


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_docs_image_and_entry_point(worker):
    readme = (workers.HANDLERS / worker / "README.md").read_text()
    undocumented = [name for name in variables(workers.config_class(worker)) if f"`{name}`" not in readme]
    assert not undocumented, f"handlers/{worker}/README.md does not document {', '.join(undocumented)}"
    assert f"(handlers/{worker}/README.md)" in (REPO / "README.md").read_text()
    dockerfile = (REPO / "dockerfiles" / f"{worker}.Dockerfile").read_text()
    assert f'CMD ["python", "-m", "handlers.{worker}"]' in dockerfile
    copied = "COPY dockerfiles/install_locked.sh shared/prune.py handlers/{worker}/requirements.lock /tmp/worker/"
    assert copied.format(worker=worker) in dockerfile
    for optional in INSTALL_INPUTS:  # what install_locked.sh reads when the worker has it
        if (workers.HANDLERS / worker / optional).is_file():
            assert re.search(rf"^COPY .*handlers/{worker}/{re.escape(optional)} .*/tmp/worker/$", dockerfile, re.M)
    assert "RUN sh /tmp/worker/install_locked.sh /tmp/worker" in dockerfile
    assert f"COPY handlers/{worker}/ handlers/{worker}/" in dockerfile
    assert f"RUN python -m shared.bytecode handlers.{worker}.adapter" in dockerfile
    assert f"from handlers.{worker}.adapter import" in (workers.HANDLERS / worker / "__main__.py").read_text()


@pytest.mark.parametrize("worker", WORKERS)
def test_schema_config_and_catalog_import_without_torch(worker):
    """The request schema, the variables and the catalog serve tools and pure tests: no model library."""
    modules = ", ".join(f"handlers.{worker}.{name}" for name in ("schema", "config", "catalog"))
    check = (
        f"import sys, {modules}; print(sorted(m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_setting_is_declared_with_a_variable_and_a_description():
    classes = [Settings, S3Settings, Mp3Settings, *(workers.config_class(worker) for worker in WORKERS)]
    for settings_class in classes:
        for name, field in settings_class.model_fields.items():
            assert field.description, f"{settings_class.__name__}.{name} has no description"
            assert field.validation_alias or field.default_factory, f"{settings_class.__name__}.{name} reads nothing"


@pytest.mark.parametrize("worker", WORKERS)
def test_every_request_field_has_a_description(worker):
    request = workers.request_model(worker)
    undescribed = [name for name, field in request.model_fields.items() if not field.description]
    assert not undescribed, f"{request.__name__}: {', '.join(undescribed)} have no description"


@pytest.mark.parametrize("worker", WORKERS)
def test_make_finds_every_worker(worker):
    for target, expected in ((f"demo-{worker}", ""), (f"serve-{worker}", " --rp_serve_api")):
        planned = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert f"scripts/run_tiny.py {worker} --volume .volume{expected}" in planned.stdout, planned.stdout
    assert worker in subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True).stdout


@pytest.mark.parametrize("worker", WORKERS)
def test_lock_files_are_fresh_and_keep_every_pin(worker):
    from scripts.lock_requirements import inputs_digest, lock_inputs

    for name, (requirements, constraints) in lock_inputs(worker).items():
        lock = workers.HANDLERS / worker / name
        fix = f"handlers/{worker}/{name} is stale: run python scripts/lock_requirements.py {worker}"
        assert lock.read_text().splitlines()[0] == f"# inputs-sha256: {inputs_digest([*requirements, *constraints])}", (
            fix
        )
        locked = _pins(lock)
        assert locked and all(locked.values()), f"{lock}: every line pins a version"
        for path in [*requirements, *constraints]:
            for package, version in _pins(path).items():
                if version and package in locked:
                    assert locked[package] == version, f"{lock}: {package}=={locked[package]}, inputs say {version}"


def test_every_version_is_pinned_once():
    shared_pins = _pins(REPO / "shared" / "requirements.txt")
    constraints = _pins(REPO / "shared" / "constraints.txt")
    assert all(shared_pins.values()) and all(constraints.values())
    assert not set(shared_pins) & set(constraints)
    for path in sorted(workers.HANDLERS.glob("*/requirements*.txt")):
        for name, version in _pins(path).items():
            where = f"{path.relative_to(REPO)}: {name}"
            assert name not in shared_pins, f"{where} is already in shared/requirements.txt"
            if version is None:
                assert name in constraints, f"{where} has no version here or in shared/constraints.txt"
            else:
                assert name not in constraints, f"{where} is pinned in shared/constraints.txt too"


def test_shared_code_and_tools_name_no_worker():
    """Model knowledge lives in handlers/<worker>/: the library, the tools and the fixtures discover workers."""
    places = [*sorted((REPO / "shared").glob("*.py")), *sorted((REPO / "scripts").glob("*.py"))]
    places += [
        REPO / "Makefile",
        REPO / "conftest.py",
        REPO / "tests" / "support.py",
        REPO / "tests" / "test_contract.py",
        # The page builds every form from the schemas: adding a model adds no UI code.
        REPO / "audio_client" / "ui.py",
        *sorted((REPO / "audio_client" / "static").iterdir()),
    ]
    for path in places:
        # The Makefile's default demo worker is configuration, not model knowledge.
        text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("DEFAULT_WORKER :="))
        for worker in WORKERS:
            assert not re.search(rf"\b{worker}\b", text), f"{path.relative_to(REPO)} names {worker}"


def test_the_shared_library_imports_no_inference_library():
    """An ONNX worker's image carries no torch: shared/ reaches torch only through shared.torch_runtime."""
    modules = [
        path.stem
        for path in (REPO / "shared").glob("*.py")
        if path.stem not in ("__init__", "torch_runtime", "onnx_runtime")
    ]
    check = (
        f"import sys, {', '.join(f'shared.{name}' for name in modules)}; "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_unpublished_packages_come_from_a_local_wheel_when_there_is_one(tmp_path):
    listing = tmp_path / "requirements-git.txt"
    listing.write_text("# a comment\n\npkg==1.2.0 @ https://example.com/archive/0123abcd.zip\n")
    script = REPO / "dockerfiles" / "install_unpublished.sh"

    def installed(*wheels_dir: str) -> str:
        done = subprocess.run(
            ["sh", str(script), str(listing), *wheels_dir],
            env={**os.environ, "PIP": "echo pip"},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    assert installed() == "pip install --no-compile --no-deps https://example.com/archive/0123abcd.zip"
    assert installed(str(tmp_path)).endswith("https://example.com/archive/0123abcd.zip")  # no wheel there
    (tmp_path / "pkg-1.1.0-py3-none-any.whl").touch()  # another version does not count
    assert installed(str(tmp_path)).endswith("0123abcd.zip")
    (tmp_path / "pkg-1.2.0-py3-none-any.whl").touch()
    assert installed(str(tmp_path)) == f"pip install --no-compile --no-deps {tmp_path}/pkg-1.2.0-py3-none-any.whl"


@pytest.mark.parametrize("listing", sorted(workers.HANDLERS.glob("*/requirements-git.txt")))
def test_unpublished_packages_are_pinned_to_a_commit(listing):
    for line in _requirements(listing):
        assert re.fullmatch(r"[\w.-]+==[\w.]+ @ https://github\.com/[\w.-]+/[\w.-]+/archive/[0-9a-f]{40}\.zip", line), (
            line
        )
