"""From the repository to running endpoints: the bake file, the workflows, the endpoint specs, the Hub listing.

The RunPod conventions checked here were read on 2026-12-06 from RunPod's own workers and docs:
runpod-workers/worker-comfyui at d2a557235b3800d68dcc6fa3259125fdf4bed8a6 and runpod-workers/worker-vllm at
7a925039a53a10eab38d1764eb717a2ea5bdee07 (docker-bake.hcl, .github/workflows/release.yml, .runpod/hub.json and
tests.json), and runpod/docs at a900806e253c4f8c16da27d1a4370e72456da4cb: hub/publishing-guide.mdx (the hub.json and
tests.json reference, below as HUB_* and TESTS_*), references/gpu-types.mdx (GPU pools and GPU IDs),
api-reference-v2/openapi.json (the REST API v2: gpu.pools, gpu.minCudaVersion / allowedCudaVersions as major.minor,
workers.idleTimeout 1-3600 s) and serverless/endpoints/model-caching.mdx (one cached model per endpoint, under
/runpod-volume/huggingface-cache/hub/models--<org>--<name>/snapshots/<commit>).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts import endpoint_table
from shared import workers
from shared.settings import Mp3Settings, S3Settings, Settings, read_settings, variables
from shared.volume import HUB_CACHE, RepoPiece, model_source
from tests.support import REPO

WORKERS = workers.worker_names()
DEPLOY = REPO / "deploy"
HUB = REPO / ".runpod"
VENV_BIN = Path(sys.executable).parent

# references/gpu-types.mdx, "GPU pools": the pool IDs hub.json's gpuIds and the v2 API's gpu.pools take.
GPU_POOLS = {"AMPERE_16", "AMPERE_24", "ADA_24", "AMPERE_48", "ADA_48_PRO", "AMPERE_80", "ADA_80_PRO", "HOPPER_141"}
# references/gpu-types.mdx: GPU IDs (tests.json's gpuTypeId, hub.json's "-<GPU ID>" negations); the ones a CUDA 13
# image can run on that this repository may name.
GPU_IDS = {
    "NVIDIA RTX A4000",
    "NVIDIA RTX A4500",
    "NVIDIA RTX A5000",
    "NVIDIA RTX A6000",
    "NVIDIA RTX 2000 Ada Generation",
    "NVIDIA RTX 4000 Ada Generation",
    "NVIDIA GeForce RTX 3090",
    "NVIDIA GeForce RTX 4090",
    "NVIDIA L4",
    "NVIDIA L40S",
    "NVIDIA A40",
    "NVIDIA A100 80GB PCIe",
    "NVIDIA H100 80GB HBM3",
}
# hub/publishing-guide.mdx: "General metadata", "Runpod configuration", "Environment variables", "Presets".
HUB_TOP = {"title": True, "description": True, "type": True, "category": True, "iconUrl": False, "config": True}
HUB_CATEGORIES = {"audio", "embedding", "language", "video", "image"}
HUB_CONFIG = {"runsOn", "containerDiskInGb", "cpuFlavor", "gpuCount", "gpuIds", "allowedCudaVersions", "env", "presets"}
HUB_INPUT_TYPES = {"string", "number", "boolean", "huggingface"}
HUB_INPUT_FIELDS = {
    "name",
    "type",
    "description",
    "default",
    "advanced",
    "options",
    "min",
    "max",
    "trueValue",
    "falseValue",
    "required",
}
# "tests.json reference": test cases and the test environment.
TESTS_CASE = {"name": True, "input": True, "timeout": False}
TESTS_CONFIG = {"gpuTypeId", "gpuCount", "cpuFlavor", "env", "allowedCudaVersions"}
CUDA_VERSION = re.compile(r"^\d+\.\d+$")  # the v2 API's pattern for CUDA versions


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals with their quotes: "\\"x\\"" -> "x"."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [_unquote(item) for item in value]
    return value


def read_bake(path: Path) -> dict[str, Any]:
    """docker-bake.hcl as {"variables": [...], "groups": {name: targets}, "targets": {name: block}}."""
    import hcl2

    with path.open() as handle:
        raw = hcl2.load(handle)

    def blocks(kind: str) -> dict[str, dict[str, Any]]:
        return {_unquote(name): body for block in raw.get(kind, []) for name, body in block.items()}

    return {
        "variables": sorted(blocks("variable")),
        "groups": {name: _unquote(body["targets"]) for name, body in blocks("group").items()},
        "targets": {
            name: {key: _unquote(value) for key, value in body.items()} for name, body in blocks("target").items()
        },
    }


def dockerfile_args(path: Path) -> set[str]:
    return set(re.findall(r"^ARG ([A-Z_]+)", path.read_text(), re.M))


def bake_problems(bake: dict[str, Any], root: Path) -> list[str]:
    """What is wrong between a bake file and the Dockerfiles under root/dockerfiles."""
    problems = []
    buildable = {name: body for name, body in bake["targets"].items() if "dockerfile" in body}
    by_file = {body["dockerfile"]: name for name, body in buildable.items()}
    for dockerfile in sorted((root / "dockerfiles").glob("*.Dockerfile")):
        relative = str(dockerfile.relative_to(root))
        if relative not in by_file:
            problems.append(f"{relative} has no target")
    for name, body in buildable.items():
        path = root / body["dockerfile"]
        if not path.is_file():
            problems.append(f"target {name} builds {body['dockerfile']}, which does not exist")
            continue
        declared, passed = dockerfile_args(path), set(body.get("args", {}))
        if declared != passed:
            problems.append(f"target {name} passes args {sorted(passed)}, its Dockerfile declares {sorted(declared)}")
    if set(bake["groups"].get("default", [])) != set(buildable):
        problems.append(f"the default group {bake['groups'].get('default')} is not every target {sorted(buildable)}")
    return problems


@pytest.mark.unit
def test_every_dockerfile_has_a_bake_target_named_as_its_worker():
    bake = read_bake(REPO / "docker-bake.hcl")
    assert bake_problems(bake, REPO) == []
    assert {"REGISTRY", "TAG", "BASE_IMAGE", "WITH_TRITON", "LOCAL_WHEELS"} <= set(bake["variables"])
    buildable = {name for name, body in bake["targets"].items() if "dockerfile" in body}
    assert buildable == set(WORKERS)
    for worker in WORKERS:
        target = bake["targets"][worker]
        assert target["dockerfile"] == f"dockerfiles/{worker}.Dockerfile"
        [tag] = target["tags"]
        image = json.loads((DEPLOY / f"{worker}.json").read_text())["image"]
        assert tag == f'${{tag_for("{image.removesuffix("-worker")}")}}', tag


@pytest.mark.unit
def test_the_bake_check_fails_on_a_missing_target_or_file(tmp_path):
    (tmp_path / "dockerfiles").mkdir()
    (tmp_path / "dockerfiles" / "one.Dockerfile").write_text("ARG BASE_IMAGE=x\nFROM ${BASE_IMAGE}\n")
    (tmp_path / "dockerfiles" / "two.Dockerfile").write_text("FROM x\n")
    (tmp_path / "docker-bake.hcl").write_text(
        'group "default" {\n  targets = ["one", "gone"]\n}\n'
        'target "one" {\n  dockerfile = "dockerfiles/one.Dockerfile"\n  args = {\n    BASE_IMAGE = "y"\n  }\n}\n'
        'target "gone" {\n  dockerfile = "dockerfiles/gone.Dockerfile"\n}\n'
    )
    assert bake_problems(read_bake(tmp_path / "docker-bake.hcl"), tmp_path) == [
        "dockerfiles/two.Dockerfile has no target",
        "target gone builds dockerfiles/gone.Dockerfile, which does not exist",
    ]


@pytest.mark.unit
def test_make_image_bakes_when_docker_has_buildx(monkeypatch):
    from scripts import image

    monkeypatch.delenv("IMAGE_BUILD_FLAGS", raising=False)
    monkeypatch.setattr(image, "docker_daemon", lambda: True)
    monkeypatch.setattr(image, "buildx_available", lambda: True)
    assert image.build_command("w", "w-worker:dev") == [
        *("docker", "buildx", "bake", "-f", "docker-bake.hcl", "--load", "--set", "w.tags=w-worker:dev", "w"),
    ]
    monkeypatch.setattr(image, "buildx_available", lambda: False)
    assert image.build_command("w", "t")[:2] == ["docker", "build"]
    monkeypatch.setattr(image, "buildx_available", lambda: True)
    monkeypatch.setenv("IMAGE_BUILD_FLAGS", "--build-arg BASE_IMAGE=b")  # docker build's flags: not bake's
    assert image.build_command("w", "t")[:4] == ["docker", "build", "--build-arg", "BASE_IMAGE=b"]
    monkeypatch.setattr(image, "docker_daemon", lambda: False)
    assert image.build_command("w", "t")[:2] == ["buildah", "build"]


def lint_workflows(*paths: Path) -> subprocess.CompletedProcess:
    """jactionlint's default rules (actionlint's checks, its security rules, actions pinned to commits), every finding
    failing (warnings and notes too), with the pinned shellcheck on the run: steps. (The workflows also pass
    `--profile pedantic` today; its policy rules are left out of the test.)"""
    environment = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(VENV_BIN / "jactionlint"), "--profile", "default", "--strict-exit", "--no-color"]
    return subprocess.run(
        [*command, *map(str, paths)], cwd=REPO, capture_output=True, text=True, env=environment, timeout=120
    )


WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


@pytest.mark.unit
def test_the_workflows_pass_actionlint():
    assert WORKFLOWS
    done = lint_workflows(*WORKFLOWS)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.unit
def test_the_workflow_check_fails_on_a_finding(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope }\n"
    )
    done = lint_workflows(broken)
    assert done.returncode != 0 and "broken.yml" in done.stdout


@pytest.mark.unit
def test_release_builds_every_image_on_a_version_tag_and_pull_requests_run_the_checks():
    import yaml

    release = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
    assert release[True]["push"]["tags"] == ["v[0-9]+.[0-9]+.[0-9]+*"]  # YAML reads the key `on` as True
    steps = [step for job in release["jobs"].values() for step in job["steps"]]
    assert any(step.get("uses", "").startswith("docker/bake-action/subaction/matrix@") for step in steps)
    [bake] = [step for step in steps if step.get("uses", "").startswith("docker/bake-action@")]
    assert bake["with"]["push"] is True and "cache-from=type=registry" in bake["with"]["set"]
    checks = yaml.safe_load((REPO / ".github" / "workflows" / "checks.yml").read_text())
    assert "pull_request" in checks[True]
    runs = [step.get("run", "") for job in checks["jobs"].values() for step in job["steps"]]
    assert "make lint" in runs
    assert any("pytest tests/test_layout.py" in run for run in runs)
    assert any("pytest -m unit" in run for run in runs)


# --- endpoint specs -------------------------------------------------------------------------------------------------


def spec(worker: str) -> dict[str, Any]:
    return json.loads((DEPLOY / f"{worker}.json").read_text())


def declared_variables(worker: str) -> set[str]:
    classes = [Settings, S3Settings, Mp3Settings, workers.config_class(worker)]
    return {name for settings_class in classes for name in variables(settings_class)}


def cache_alone(worker: str) -> set[str]:
    """The published checkpoints a worker serves from RunPod's model cache with nothing else: one repository that is
    the whole model (no pieces assembled from others, no companion model such as an audio tokenizer beside it),
    whose published layout the tests serve (a tiny model claims it: tests/test_published.py)."""
    from tests.test_published import RECORDS, tiny_for

    catalog = workers.catalog(worker)
    if catalog.companion_models:
        return set()
    return {
        record.repo
        for record in RECORDS[worker]
        if tiny_for(worker, record.repo) is not None and catalog.pieces(record.repo) == (RepoPiece(record.repo),)
    }


@pytest.mark.unit
def test_every_worker_has_an_endpoint_spec_and_every_spec_a_worker():
    assert sorted(path.stem for path in DEPLOY.glob("*.json")) == WORKERS


@pytest.mark.unit
@pytest.mark.parametrize("worker", WORKERS)
def test_endpoint_spec(worker):
    endpoint = spec(worker)
    assert endpoint["worker"] == worker
    assert endpoint["dockerfile"] == f"dockerfiles/{worker}.Dockerfile" and (REPO / endpoint["dockerfile"]).is_file()
    gpu = endpoint["gpu"]
    assert gpu["pools"] and set(gpu["pools"]) <= GPU_POOLS, gpu["pools"]
    assert gpu["count"] >= 1 and gpu["memory"]
    # torch 2.13.0 (and onnxruntime-gpu 1.31.1) from PyPI are built for CUDA 13.0: 13.x hosts only.
    assert endpoint["cuda"]["min"] == "13.0"
    assert all(CUDA_VERSION.match(v) and v.startswith("13.") for v in endpoint["cuda"]["allowed"])
    assert "13.0" in endpoint["cuda"]["allowed"]
    assert isinstance(endpoint["container_disk_gb"], int) and endpoint["container_disk_gb"] >= 5
    assert 5 <= endpoint["execution_timeout_s"] <= 7 * 24 * 3600  # the console's range
    assert 1 <= endpoint["idle_timeout_s"] <= 3600  # the v2 API's workers.idleTimeout
    assert 0 <= endpoint["workers"]["min"] <= endpoint["workers"]["max"]
    assert (endpoint["model_cache"] is None) != (endpoint["volume"] is None), "the Model setting or a volume"


@pytest.mark.unit
@pytest.mark.parametrize("worker", WORKERS)
def test_every_variable_a_spec_names_is_declared_and_its_value_valid(worker, monkeypatch):
    endpoint = spec(worker)
    named = [*endpoint["env"], *endpoint["operator_env"]]
    undeclared = sorted(set(named) - declared_variables(worker))
    assert not undeclared, f"deploy/{worker}.json names {undeclared}, which no settings class declares"
    for name in declared_variables(worker):
        monkeypatch.delenv(name, raising=False)
    for name, value in endpoint["env"].items():
        assert isinstance(value, str), f"{name}: environment values are strings"
        monkeypatch.setenv(name, value)
    read_settings(Settings)
    read_settings(workers.config_class(worker))


@pytest.mark.unit
def test_the_variable_check_knows_what_a_worker_declares():
    everywhere = declared_variables(WORKERS[0]) & declared_variables(WORKERS[-1])
    assert {"MODEL_ID", "MAX_CONCURRENCY", "BUCKET_NAME", "MP3_BITRATE_MODE"} <= everywhere
    assert "NOT_A_SETTING" not in everywhere


@pytest.mark.unit
@pytest.mark.parametrize("worker", WORKERS)
def test_the_model_setting_is_named_exactly_where_it_serves_the_worker_alone(worker):
    endpoint = spec(worker)
    cache = endpoint["model_cache"]
    named = {cache["model"], *cache["also"]} if cache else set()
    assert named == cache_alone(worker)
    if cache:
        assert endpoint["env"]["MODEL_ID"] == cache["model"]
    else:
        assert endpoint["volume"]["why"] and endpoint["volume"]["populate"].startswith(
            f"python scripts/populate_volume.py {worker} "
        )


@pytest.mark.unit
def test_the_readme_endpoint_table_is_rendered_from_the_specs():
    readme = (REPO / "README.md").read_text()
    for start, end, render in endpoint_table.BLOCKS:
        assert endpoint_table.readme_table(readme, start, end) == render(), "stale: run make endpoint-table"
    for worker in WORKERS:
        assert f"| `{worker}` |" in endpoint_table.table()


@pytest.mark.unit
def test_the_table_check_fails_when_a_spec_changes(tmp_path):
    for path in DEPLOY.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    changed = spec(WORKERS[0]) | {"container_disk_gb": 99}
    (tmp_path / f"{WORKERS[0]}.json").write_text(json.dumps(changed))
    assert endpoint_table.table(tmp_path) != endpoint_table.table()
    assert "| 99 GB |" in endpoint_table.table(tmp_path)


@pytest.mark.unit
def test_make_endpoint_table_rewrites_a_stale_readme_and_the_check_says_so(tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    current = (REPO / "README.md").read_text()
    stale = current.replace(endpoint_table.weights_table(), endpoint_table.weights_table().replace("`", "", 2), 1)
    assert stale != current
    readme.write_text(stale)
    monkeypatch.setattr(endpoint_table, "README", readme)
    assert endpoint_table.main(["--check"]) == 1
    assert "run make endpoint-table" in capsys.readouterr().err
    assert endpoint_table.main(["--write"]) == 0
    assert readme.read_text() == current
    assert endpoint_table.main(["--check"]) == 0


# --- the RunPod Hub listing -----------------------------------------------------------------------------------------


def _instructions(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def listed_worker() -> str:
    """The worker whose image .runpod/Dockerfile builds (its instructions are that worker's Dockerfile's)."""
    [worker] = [w for w in WORKERS if _instructions(HUB / "Dockerfile") == _instructions(REPO / spec(w)["dockerfile"])]
    return worker


def _field_problems(where: str, fields: dict[str, Any], documented: dict[str, bool] | set[str]) -> list[str]:
    required = {name for name, needed in documented.items() if needed} if isinstance(documented, dict) else set()
    problems = [f"{where}: missing {name}" for name in sorted(required - set(fields))]
    return problems + [f"{where}: {name} is not a documented field" for name in sorted(set(fields) - set(documented))]


def _cuda_problems(where: str, versions: Any) -> list[str]:
    if not isinstance(versions, list) or not all(isinstance(v, str) and CUDA_VERSION.match(v) for v in versions):
        return [f"{where}: allowedCudaVersions must be a list of major.minor strings"]
    return []


def hub_problems(hub: dict[str, Any]) -> list[str]:
    """hub.json against hub/publishing-guide.mdx's hub.json reference."""
    problems = _field_problems("hub.json", hub, HUB_TOP)
    if hub.get("type") != "serverless":
        problems.append('hub.json: type must be "serverless"')
    if hub.get("category") not in HUB_CATEGORIES:
        problems.append(f"hub.json: category {hub.get('category')!r} is not one of {sorted(HUB_CATEGORIES)}")
    config = hub.get("config", {})
    problems += _field_problems("config", config, HUB_CONFIG)
    if config.get("runsOn") not in ("GPU", "CPU"):
        problems.append("config: runsOn must be GPU or CPU")
    if not isinstance(config.get("containerDiskInGb"), int):
        problems.append("config: containerDiskInGb must be an integer")
    if config.get("runsOn") == "GPU":
        if not isinstance(config.get("gpuCount"), int) or config.get("gpuCount", 0) < 1:
            problems.append("config: gpuCount must be a positive integer on GPU")
        for item in str(config.get("gpuIds", "")).split(","):
            if not (item in GPU_POOLS or (item.startswith("-") and item[1:] in GPU_IDS)):
                problems.append(f"config: gpuIds item {item!r} is neither a GPU pool nor a -<GPU ID> negation")
    problems += _cuda_problems("config", config.get("allowedCudaVersions", []))
    keys = set()
    for entry in config.get("env", []):
        keys.add(entry.get("key"))
        if not isinstance(entry.get("key"), str) or ("value" in entry) == ("input" in entry):
            problems.append(f"env {entry.get('key')!r}: a key and exactly one of value (static) or input")
            continue
        field = entry.get("input")
        if field is None:
            continue
        where = f"env {entry['key']}"
        problems += _field_problems(where, field, dict.fromkeys(HUB_INPUT_FIELDS, False))
        if not field.get("name") or field.get("type") not in HUB_INPUT_TYPES:
            problems.append(f"{where}: input needs a name and a type of {sorted(HUB_INPUT_TYPES)}")
        if "options" in field:
            values = [option.get("value") for option in field["options"]]
            if not all(set(option) == {"label", "value"} for option in field["options"]):
                problems.append(f"{where}: options are {{label, value}} pairs")
            if "default" in field and field["default"] not in values:
                problems.append(f"{where}: default {field['default']!r} is not an option")
        if field.get("type") == "boolean" and not isinstance(field.get("default", False), bool):
            problems.append(f"{where}: a boolean's default is true or false")
        if field.get("type") == "number" and not all(
            isinstance(field.get(name, 0), int | float) for name in ("min", "max", "default")
        ):
            problems.append(f"{where}: a number's min, max and default are numbers")
    for preset in config.get("presets", []):
        if set(preset) != {"name", "defaults"} or not isinstance(preset.get("defaults"), dict):
            problems.append(f"preset {preset.get('name')!r}: a name and defaults")
        elif set(preset["defaults"]) - keys:
            problems.append(f"preset {preset['name']!r} sets {sorted(set(preset['defaults']) - keys)}, not in env")
    return problems


def hub_tests_problems(tests: dict[str, Any]) -> list[str]:
    """tests.json against hub/publishing-guide.mdx's tests.json reference."""
    problems = _field_problems("tests.json", tests, {"tests": True, "config": True})
    if not tests.get("tests"):
        problems.append("tests.json: no test case")
    for case in tests.get("tests", []):
        problems += _field_problems(f"test {case.get('name')!r}", case, TESTS_CASE)
        if not isinstance(case.get("input"), dict):
            problems.append(f"test {case.get('name')!r}: input is the job's input object")
        if "timeout" in case and not (isinstance(case["timeout"], int) and case["timeout"] > 0):
            problems.append(f"test {case.get('name')!r}: timeout is an integer of milliseconds")
    config = tests.get("config", {})
    problems += _field_problems("tests.json config", config, TESTS_CONFIG)
    if "cpuFlavor" not in config:
        if config.get("gpuTypeId") not in GPU_IDS:
            problems.append(f"tests.json config: gpuTypeId {config.get('gpuTypeId')!r} is not a GPU ID")
        if not isinstance(config.get("gpuCount"), int) or config.get("gpuCount", 0) < 1:
            problems.append("tests.json config: gpuCount must be a positive integer")
    for entry in config.get("env", []):
        if set(entry) != {"key", "value"} or not isinstance(entry.get("value"), str):
            problems.append(f"tests.json env {entry.get('key')!r}: a key and a string value")
    return problems + _cuda_problems("tests.json config", config.get("allowedCudaVersions", []))


@pytest.mark.unit
def test_the_hub_files_follow_the_documented_schema():
    assert hub_problems(json.loads((HUB / "hub.json").read_text())) == []
    assert hub_tests_problems(json.loads((HUB / "tests.json").read_text())) == []
    for name in ("Dockerfile", "handler.py", "README.md"):  # the publishing guide's required files (.runpod/)
        assert (HUB / name).is_file(), name


@pytest.mark.unit
def test_the_hub_schema_checks_fail_on_what_the_docs_rule_out():
    hub = json.loads((HUB / "hub.json").read_text())
    broken = hub | {"category": "music", "config": hub["config"] | {"gpuIds": "RTX_4090", "allowedCudaVersions": [13]}}
    broken["config"]["env"] = [*hub["config"]["env"], {"key": "X", "value": "1", "input": {"name": "x"}}]
    assert len(hub_problems(broken)) == 4
    tests = json.loads((HUB / "tests.json").read_text())
    assert hub_tests_problems(tests | {"tests": [{"input": "x", "timeout": "5s"}]}) == [
        "test None: missing name",
        "test None: input is the job's input object",
        "test None: timeout is an integer of milliseconds",
    ]


@pytest.mark.unit
def test_the_hub_listing_is_a_model_cache_worker_deployed_as_its_spec_says():
    from shared.schemas import parse_request

    worker = listed_worker()
    endpoint = spec(worker)
    assert endpoint["model_cache"] is not None, "the Hub listing must serve without a network volume"
    hub = json.loads((HUB / "hub.json").read_text())
    config = hub["config"]
    assert config["gpuIds"].split(",") == endpoint["gpu"]["pools"]
    assert config["gpuCount"] == endpoint["gpu"]["count"]
    assert config["containerDiskInGb"] == endpoint["container_disk_gb"]
    assert config["allowedCudaVersions"] == endpoint["cuda"]["allowed"]
    keys = {entry["key"] for entry in config["env"]}
    assert keys <= declared_variables(worker), sorted(keys - declared_variables(worker))
    served = {endpoint["model_cache"]["model"], *endpoint["model_cache"]["also"]}
    [model] = [entry["input"] for entry in config["env"] if entry["key"] == "MODEL_ID"]
    assert {option["value"] for option in model["options"]} == served
    assert model["default"] == endpoint["model_cache"]["model"]
    assert {preset["defaults"]["MODEL_ID"] for preset in config["presets"]} == served
    tests = json.loads((HUB / "tests.json").read_text())
    assert {entry["key"] for entry in tests["config"]["env"]} <= declared_variables(worker)
    assert tests["config"]["allowedCudaVersions"] == endpoint["cuda"]["allowed"]
    for case in tests["tests"]:
        parse_request(workers.request_model(worker), case["input"], 1024)
    handler = (HUB / "handler.py").read_text()
    assert f'runpy.run_module("handlers.{worker}"' in handler


# --- where a worker loaded its model from ---------------------------------------------------------------------------


@pytest.mark.unit
def test_the_model_source_names_the_cache_snapshot_the_volume_folder_or_model_dir(tmp_path):
    volume = tmp_path / "volume"
    snapshot = volume / HUB_CACHE / "models--org--name" / "snapshots" / "abc123"
    assert model_source(snapshot, volume) == f"RunPod's model cache (org/name at revision abc123, {snapshot})"
    folder = volume / "worker" / "org" / "name"
    assert model_source(folder, volume) == f"the volume folder {folder}"
    assert model_source(tmp_path / "mine", volume, tmp_path / "mine") == f"MODEL_DIR {tmp_path / 'mine'}"
    assert model_source(snapshot, volume, snapshot) == f"MODEL_DIR {snapshot}"
    assert model_source(tmp_path / "elsewhere", volume) == f"the folder {tmp_path / 'elsewhere'}"


def _cache_only_volume(worker: str, repo: str, root: Path) -> Path:
    """A volume holding nothing but RunPod's model cache of one repository, in its published layout, rewritten
    from the worker's tiny model of that architecture (tests/test_published.py's way)."""
    from shared.published import write_hub_cache, write_published_layout
    from tests.test_published import RECORDS, _built_sources

    records = {record.repo: record for record in RECORDS[worker]}
    built = _built_sources(worker, records[repo], root / "built")
    layout = root / "layout" / repo
    write_published_layout(built[repo], records[repo], layout)
    write_hub_cache(layout, root / "volume" / HUB_CACHE, repo, commit="c0ffee" * 6 + "c0ff")
    return root / "volume"


CACHED = [worker for worker in WORKERS if spec(worker)["model_cache"]]


@pytest.mark.tiny
@pytest.mark.parametrize("worker", CACHED)
def test_a_model_cache_worker_serves_with_only_the_snapshot_its_spec_names(worker, tmp_path, monkeypatch):
    from loguru import logger

    from tests.test_published import _serve

    endpoint = spec(worker)
    repo = endpoint["model_cache"]["model"]
    volume = _cache_only_volume(worker, repo, tmp_path)
    assert [path.name for path in volume.iterdir()] == ["huggingface-cache"]
    for name, value in endpoint["env"].items():
        monkeypatch.setenv(name, value)
    logged: list[str] = []
    sink = logger.add(
        lambda message: logged.append(message.record["message"]), filter=lambda r: "loading" in r["message"]
    )
    try:
        _serve(worker, volume, repo, tmp_path / "out", monkeypatch)
    finally:
        logger.remove(sink)
    snapshot = volume / HUB_CACHE / f"models--{repo.replace('/', '--')}" / "snapshots" / ("c0ffee" * 6 + "c0ff")
    expected = f"loading {repo} from RunPod's model cache ({repo} at revision {'c0ffee' * 6 + 'c0ff'}, {snapshot})"
    assert any(line.startswith(expected) for line in logged), logged


def _volume_cases() -> list[tuple[str, str]]:
    """Volume workers whose default model is a published repository: what the Model setting could at most hold."""
    from tests.test_published import RECORDS, tiny_for

    return [
        (worker, spec(worker)["env"]["MODEL_ID"])
        for worker in WORKERS
        if spec(worker)["volume"]
        and tiny_for(worker, spec(worker)["env"]["MODEL_ID"]) is not None
        and spec(worker)["env"]["MODEL_ID"] in {record.repo for record in RECORDS[worker]}
    ]


@pytest.mark.tiny
@pytest.mark.parametrize("case", _volume_cases(), ids=lambda case: case[0])
def test_a_volume_worker_does_not_start_from_its_model_snapshot_alone(case, tmp_path):
    from shared.errors import ModelFilesError
    from shared.pipeline import Worker

    worker, repo = case
    volume = _cache_only_volume(worker, repo, tmp_path)
    assert (volume / HUB_CACHE / f"models--{repo.replace('/', '--')}" / "snapshots").is_dir()
    settings = Settings(volume_root=volume, model_id=repo, output_dir=tmp_path / "out")
    with pytest.raises(ModelFilesError, match="incomplete|not found"):
        Worker(workers.adapter_class(worker), settings).start()


@pytest.mark.unit
def test_a_worker_without_hub_repositories_needs_a_volume():
    for worker in WORKERS:
        if not workers.catalog(worker).repositories:
            assert spec(worker)["volume"] is not None and spec(worker)["model_cache"] is None


# --- scripts/deploy.py against a double of RunPod's REST API v2 -----------------------------------------------------
# The double follows the v2 reference (runpod/docs a900806e253c4f8c16da27d1a4370e72456da4cb,
# api-reference-v2/openapi.json): Bearer authentication; lists wrapped by resource ({"templates": [...]},
# {"endpoints": [...]}); CreateTemplateRequest (name and image required), CreateEndpointRequest (name, type and
# scaling required, image unless templateId, gpu.pools required, gpu or cpu), their Update* forms (every field
# optional), unevaluatedProperties: false on each (an unknown field is a 400), major.minor CUDA versions with
# minCudaVersion exclusive of a non-empty allowedCudaVersions, workers.idleTimeout 1-3600, the scaling union
# (QUEUE_DELAY with queueDelay >= 0.5, or REQUEST_COUNT), string env values; errors in RFC 9457's problem format.

CONTAINER = {"args", "disk", "env", "image", "ports", "registry"}
TEMPLATE_FIELDS = CONTAINER | {
    "name",
    "allowedCudaVersions",
    "category",
    "mounts",
    "public",
    "serverless",
    "startJupyter",
    "startSsh",
}
ENDPOINT_FIELDS = CONTAINER | {
    "gpu",
    "name",
    "scaling",
    "type",
    "cpu",
    "dataCenterIds",
    "flashboot",
    "networkVolumes",
    "templateId",
    "timeout",
    "workers",
}
GPU_FIELDS = {"pools", "excludedTypes", "count", "allowedCudaVersions", "minCudaVersion"}


def _v2_problems(kind: str, body: dict[str, Any], create: bool) -> list[str]:
    fields = TEMPLATE_FIELDS if kind == "templates" else ENDPOINT_FIELDS
    problems = [f"$: additional properties '{name}' not allowed" for name in sorted(set(body) - fields)]
    env = body.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(value, str) for value in env.values()):
        problems.append("$.env: values must be strings")
    if "disk" in body and not (isinstance(body["disk"], int) and body["disk"] >= 1):
        problems.append("$.disk: integer >= 1")
    if kind == "templates":
        required = {"name", "image"} if create else set()
        problems += [f"$: missing property '{name}'" for name in sorted(required - set(body))]
        versions = body.get("allowedCudaVersions", [])
        problems += [f"$.allowedCudaVersions: {v!r} is not major.minor" for v in versions if not CUDA_VERSION.match(v)]
        return problems
    required = {"name", "type", "scaling"} | ({"image"} if "templateId" not in body else set()) if create else set()
    problems += [f"$: missing property '{name}'" for name in sorted(required - set(body))]
    if create and ("gpu" in body) == ("cpu" in body):
        problems.append("$: exactly one of gpu or cpu")
    if "type" in body and body["type"] not in ("QUEUE", "LOAD_BALANCER"):
        problems.append("$.type: QUEUE or LOAD_BALANCER")
    gpu = body.get("gpu", {})
    problems += [f"$.gpu: additional properties '{name}' not allowed" for name in sorted(set(gpu) - GPU_FIELDS)]
    if create and "gpu" in body and not gpu.get("pools"):
        problems.append("$.gpu: missing property 'pools'")
    if gpu.get("allowedCudaVersions") and gpu.get("minCudaVersion"):
        problems.append("$.gpu: allowedCudaVersions and minCudaVersion are mutually exclusive")
    for version in [*gpu.get("allowedCudaVersions", []), *([gpu["minCudaVersion"]] if "minCudaVersion" in gpu else [])]:
        if not CUDA_VERSION.match(version):
            problems.append(f"$.gpu: CUDA version {version!r} is not major.minor")
    workers_ = body.get("workers", {})
    if set(workers_) - {"min", "max", "idleTimeout"}:
        problems.append("$.workers: additional properties not allowed")
    if "idleTimeout" in workers_ and not 1 <= workers_["idleTimeout"] <= 3600:
        problems.append("$.workers.idleTimeout: 1 to 3600")
    scaling = body.get("scaling")
    if scaling is not None and not (
        (
            scaling.get("type") == "QUEUE_DELAY"
            and set(scaling) == {"type", "queueDelay"}
            and scaling["queueDelay"] >= 0.5
        )
        or (scaling.get("type") == "REQUEST_COUNT" and set(scaling) == {"type", "requestCount"})
    ):
        problems.append("$.scaling: QUEUE_DELAY with queueDelay >= 0.5, or REQUEST_COUNT with requestCount")
    if "flashboot" in body and body["flashboot"] not in ("OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"):
        problems.append("$.flashboot: OFF, FLASHBOOT or PRIORITY_FLASHBOOT")
    return problems


class RestDouble:
    """RunPod's REST API v2 for templates and serverless endpoints, in memory, on a loopback port."""

    KEY = "test-key"

    def __init__(self) -> None:
        import http.server
        import threading

        self.resources: dict[str, dict[str, dict[str, Any]]] = {"templates": {}, "serverless": {}}
        self.requests: list[tuple[str, str, Any]] = []
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/problem+json" if status >= 400 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                double.requests.append((method, self.path, body))
                status, answer = double.route(method, self.path, body, self.headers.get("Authorization"))
                self._answer(status, answer)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def problem(status: int, title: str, detail: str, errors: list[str] | None = None) -> tuple[int, dict]:
        return status, {"title": title, "status": status, "detail": detail, **({"errors": errors} if errors else {})}

    def route(self, method: str, path: str, body: Any, authorization: str | None) -> tuple[int, Any]:
        if authorization != f"Bearer {self.KEY}":
            return self.problem(401, "Unauthorized", "missing or invalid API key")
        match = re.fullmatch(r"/v2/(templates|serverless)(?:/([\w-]+))?", path)
        if not match:
            return self.problem(404, "Not Found", f"no route {path}")
        kind, resource_id = match.groups()
        wrapper = "templates" if kind == "templates" else "endpoints"
        store = self.resources[kind]
        if method == "GET" and resource_id is None:
            return 200, {wrapper: list(store.values())}
        if method == "POST" and resource_id is None:
            problems = _v2_problems(kind, body, create=True)
            if problems:
                return self.problem(400, "Bad Request", "request validation failed", problems)
            return 201, self.store(kind, f"{kind[:3]}_{len(store) + 1}", body)
        if method == "PATCH" and resource_id is not None:
            if resource_id not in store:
                return self.problem(404, "Not Found", f"{kind} {resource_id} does not exist")
            problems = _v2_problems(kind, body, create=False)
            if problems:
                return self.problem(400, "Bad Request", "request validation failed", problems)
            return 200, self.store(kind, resource_id, body, store[resource_id])
        return self.problem(405, "Method Not Allowed", f"{method} {path}")

    def store(self, kind: str, resource_id: str, body: dict, current: dict | None = None) -> dict:
        resource = {**(current or {}), **body, "id": resource_id}
        if kind == "serverless" and "templateId" in body:  # the template's container settings, applied once
            template = self.resources["templates"].get(body["templateId"])
            if template is None:
                raise AssertionError(f"unknown template {body['templateId']}")  # the API answers 404
            for field in ("image", "disk", "ports", "registry"):
                if field in template and field not in body:
                    resource[field] = template[field]
            resource["env"] = {**template.get("env", {}), **body.get("env", {})}
        self.resources[kind][resource_id] = resource
        return resource


@pytest.fixture
def rest_double():
    double = RestDouble()
    yield double
    double.close()


def _deploy(double: RestDouble, monkeypatch, *arguments: str) -> int:
    from scripts import deploy

    monkeypatch.setenv("RUNPOD_API_KEY", RestDouble.KEY)
    return deploy.main([*arguments, "--api-url", double.url])


@pytest.mark.unit
def test_deploy_creates_then_updates_the_template_and_endpoint_from_the_spec(rest_double, monkeypatch, capsys):
    worker = CACHED[0]
    endpoint = spec(worker)
    monkeypatch.setenv("BUCKET_NAME", "takes")
    assert _deploy(rest_double, monkeypatch, worker, "--image", "reg/w:1") == 0
    [template] = rest_double.resources["templates"].values()
    assert template["image"] == "reg/w:1" and template["disk"] == endpoint["container_disk_gb"]
    assert template["env"] == endpoint["env"] | {"BUCKET_NAME": "takes"} and template["serverless"] is True
    [created] = rest_double.resources["serverless"].values()
    assert created["name"] == worker and created["type"] == "QUEUE" and created["templateId"] == template["id"]
    assert created["gpu"]["pools"] == endpoint["gpu"]["pools"] and created["gpu"]["minCudaVersion"] == "13.0"
    assert created["timeout"] == endpoint["execution_timeout_s"] * 1000
    assert created["workers"]["idleTimeout"] == endpoint["idle_timeout_s"]
    assert created["image"] == "reg/w:1" and created["networkVolumes"] == []
    said = capsys.readouterr().out
    assert (
        f"set the endpoint's Model (console: Manage, Edit Endpoint, Model) to {endpoint['model_cache']['model']}"
        in said
    )

    assert _deploy(rest_double, monkeypatch, worker, "--image", "reg/w:2", "--env", "LOG_LEVEL=DEBUG") == 0
    assert len(rest_double.resources["templates"]) == len(rest_double.resources["serverless"]) == 1
    [updated] = rest_double.resources["serverless"].values()
    assert updated["id"] == created["id"] and updated["image"] == "reg/w:2"
    assert updated["env"]["LOG_LEVEL"] == "DEBUG"
    methods = [(method, path.split("/")[2]) for method, path, _ in rest_double.requests if method != "GET"]
    assert methods == [("POST", "templates"), ("POST", "serverless"), ("PATCH", "templates"), ("PATCH", "serverless")]


@pytest.mark.unit
def test_deploy_attaches_the_volume_a_worker_needs_and_refuses_without_one(rest_double, monkeypatch, capsys):
    worker = next(worker for worker in WORKERS if spec(worker)["volume"])
    assert _deploy(rest_double, monkeypatch, worker, "--image", "reg/w:1") == 2
    assert f"python scripts/populate_volume.py {worker}" in capsys.readouterr().err
    assert rest_double.requests == []
    arguments = ("--image", "reg/w:1", "--network-volume", "vol_1", "--data-center", "EU-RO-1")
    assert _deploy(rest_double, monkeypatch, worker, *arguments) == 0
    [created] = rest_double.resources["serverless"].values()
    assert created["networkVolumes"] == ["vol_1"] and created["dataCenterIds"] == ["EU-RO-1"]


@pytest.mark.unit
def test_deploy_reports_the_apis_problem_and_the_double_enforces_the_reference(rest_double, monkeypatch, capsys):
    monkeypatch.setenv("RUNPOD_API_KEY", "wrong")
    from scripts import deploy

    assert deploy.main([CACHED[0], "--image", "reg/w:1", "--api-url", rest_double.url]) == 1
    assert "HTTP 401 Unauthorized: missing or invalid API key" in capsys.readouterr().err
    body = deploy.endpoint_body(spec(CACHED[0]), "e", "tpl_1", None, [])
    assert _v2_problems("serverless", body | {"type": "QUEUE"}, create=True) == []
    assert _v2_problems("serverless", body, create=True) == ["$: missing property 'type'"]
    both = body | {"type": "QUEUE", "gpu": body["gpu"] | {"allowedCudaVersions": ["13.0"]}, "model": "x"}
    assert _v2_problems("serverless", both, create=True) == [
        "$: additional properties 'model' not allowed",
        "$.gpu: allowedCudaVersions and minCudaVersion are mutually exclusive",
    ]
    assert _v2_problems("templates", {"name": "t", "env": {"A": 1}}, create=True) == [
        "$.env: values must be strings",
        "$: missing property 'image'",
    ]
