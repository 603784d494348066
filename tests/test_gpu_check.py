"""make gpu-check (scripts/gpu_check.py) and its environment (scripts/gpu_check_env.py).

On this CPU machine the command runs end to end on a tiny model (DEVICE=cpu, every figure labelled CPU); the parts'
subprocess handling is checked with real processes that hang and fail; and the offline path runs whole: the wheelhouse
for this Python from PyPI, then, with the network off, the check's venv on a host venv's own torch, and the check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from scripts import gpu_check, gpu_check_env
from shared import workers

REPO = Path(__file__).resolve().parents[1]
# Fast workers for the end-to-end run (their tiny models build and generate in seconds): one that batches, and one
# on ONNX (its execution provider is reported).
BATCHING_WORKER, ONNX_WORKER = "musicgen", "diffsinger"


@pytest.mark.integration
def test_the_check_runs_end_to_end_on_the_cpu_and_labels_every_figure_cpu(tmp_path):
    out = tmp_path / "report"
    command = [sys.executable, "scripts/gpu_check.py", "--workers", f"{BATCHING_WORKER},{ONNX_WORKER}"]
    command += ["--device", "cpu", "--out", str(out), "--volume", str(tmp_path / "volume")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["device"] == "cpu" and report["label"] == "CPU"
    assert {"python", "torch", "torch_pin", "driver", "gpus"} <= set(report["host"])
    status = {(part["part"], part["worker"]): part for part in report["parts"]}
    assert status[("host", None)]["status"] == "ok"
    for worker in (BATCHING_WORKER, ONNX_WORKER):
        plan = report["workers"][worker]
        assert plan["size"] == "tiny" and plan["job"] == workers.module(worker, "fixtures").CONTRACT.job_input
        for part in ("build", "measure", "tests"):
            assert status[(part, worker)]["status"] == "ok", status[(part, worker)]
        assert status[("build", worker)]["data"]["bytes"] > 0
        tests = status[("tests", worker)]["data"]["tests"]  # the GPU tier, each test skipped here: no CUDA
        assert tests and all(test["status"] == "skipped" and "no CUDA" in test["reason"] for test in tests)
        assert status[("residency", worker)]["status"] == "skipped"
    assert report["workers"][BATCHING_WORKER]["batches"] and not report["workers"][ONNX_WORKER]["batches"]
    assert status[("batching", BATCHING_WORKER)]["status"] == "ok"
    assert status[("batching", ONNX_WORKER)]["reason"] == "the adapter does not batch (batch_key is None)"
    assert {row["device"] for row in report["figures"]} == {"CPU"}
    figures = {(row["worker"], row["figure"]): row for row in report["figures"]}
    for name in ("load time", "memory after load", "memory peak during the job", "memory after unload"):
        assert figures[(BATCHING_WORKER, name)]["value"] > 0
    assert figures[(BATCHING_WORKER, "memory after load")]["unit"].startswith("MiB (CPU")
    assert figures[(ONNX_WORKER, "real-time factor, warm job")]["value"] > 0
    memory = figures[(BATCHING_WORKER, "memory after load")]  # the README's estimate beside it, with its source
    assert memory["estimate"] and memory["estimate_source"].startswith(f"handlers/{BATCHING_WORKER}/README.md")
    assert figures[(BATCHING_WORKER, "throughput batched / one by one")]["value"] > 0
    assert figures[(BATCHING_WORKER, "throughput batched / one by one")]["estimate"]
    provider = figures[(ONNX_WORKER, "ONNX execution provider")]
    assert provider["value"] == "CPUExecutionProvider" and "CUDAExecutionProvider" in provider["estimate"]
    text = (out / "report.md").read_text()
    assert text.startswith("# gpu-check report (CPU)")
    assert "| Worker | Figure | Measured | Unit | Device | README estimate | Estimate from |" in text
    assert (out / "logs" / f"measure-{ONNX_WORKER}.log").is_file()
    # Each model is built once: a second plan finds it.
    assert not gpu_check.plan_worker(ONNX_WORKER, "cpu", None, tmp_path / "volume").build


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.mark.unit
def test_a_part_that_hangs_is_killed_with_its_children_at_its_timeout(tmp_path):
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )
    started = time.monotonic()
    outcome = gpu_check.run_part("measure", "x", _python(code), timeout=3, log_dir=tmp_path)
    assert outcome.status == "timeout" and "killed" in outcome.reason
    assert time.monotonic() - started < 30
    child = int(pid_file.read_text())
    for _ in range(50):  # the grandchild went with the group
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {child} outlived its part")


@pytest.mark.unit
def test_a_part_that_fails_is_recorded_with_its_error_and_the_next_runs(tmp_path):
    failed = gpu_check.run_part("batching", "x", _python("raise ValueError('no such model')"), 30, tmp_path)
    assert failed.status == "failed" and "ValueError: no such model" in failed.reason
    assert "Traceback" in failed.log_tail
    write = "import json, os; open(os.environ['GPU_CHECK_RESULT'], 'w').write(json.dumps({'value': 3}))"
    ok = gpu_check.run_part("batching", "y", _python(write), 30, tmp_path)
    assert ok.status == "ok" and ok.data == {"value": 3}
    skip = "import json, os; open(os.environ['GPU_CHECK_RESULT'], 'w').write(json.dumps({'skipped': 'no GPU build'}))"
    skipped = gpu_check.run_part("measure", "z", _python(skip), 30, tmp_path)
    assert skipped.status == "skipped" and skipped.reason == "no GPU build"


def _plan(**changes) -> gpu_check.Plan:
    fields = {
        "worker": "w",
        "device": "cpu",
        "runtime": "torch",
        "batches": True,
        "residencies": ("sequential",),
        "default_model_id": "org/name",
        "volume": "/nonexistent",
        "model_id": "tiny-random/w",
        "size": "tiny",
        "architecture": "tiny",
        "job": {},
        "job_source": "test",
        "build": True,
    }
    return gpu_check.Plan(**(fields | changes))


@pytest.mark.unit
def test_parts_are_skipped_with_the_reason_when_the_budget_is_spent_or_the_build_failed(tmp_path):
    spent = gpu_check.Budget(0)
    outcomes = gpu_check._measure_worker(_plan(), None, set(), spent, tmp_path)
    assert [(o.part, o.status, o.reason) for o in outcomes] == [
        (part, "skipped", "over the run's budget") for part in ("measure", "batching", "residency")
    ]
    build: Future[gpu_check.PartOutcome] = Future()
    build.set_result(gpu_check.PartOutcome("build", "w", "timeout", 240.0, reason="no result after 240 s: killed"))
    outcomes = gpu_check._measure_worker(_plan(), build, set(), gpu_check.Budget(600), tmp_path)
    assert outcomes[0].status == "timeout"
    assert all(o.status == "skipped" and "was not built (timeout" in o.reason for o in outcomes[1:])
    plain = _plan(batches=False, residencies=())
    outcomes = gpu_check._measure_worker(plain, None, {"measure"}, spent, tmp_path)
    assert [o.reason for o in outcomes] == [
        "--skip measure",
        "the adapter does not batch (batch_key is None)",
        "the adapter offers no residency beyond keep and unload",
    ]


@pytest.mark.unit
def test_the_budget_cuts_each_timeout_to_what_is_left():
    budget = gpu_check.Budget(100)
    assert 90 < budget.timeout("measure") <= 100  # 150 s cut to the 100 s left
    assert gpu_check.Budget(1000).timeout("measure") == gpu_check.TIMEOUTS["measure"]
    assert gpu_check.Budget(5).timeout("host") is None


@pytest.mark.unit
def test_the_readme_estimates_are_read_with_their_sources():
    names = workers.worker_names()
    defaults = {name: workers.catalog(name).default_model_id for name in names}
    estimates = gpu_check.read_estimates(names, defaults)
    for name in names:
        assert estimates[name]["gpu_memory"]["source"] == "README.md, Endpoint settings table", name
        assert "onnx_provider" in estimates[name]
    with_page = [name for name in names if "checkpoint_memory" in estimates[name]]
    assert with_page, "no worker page's checkpoint table gave the default checkpoint's GPU memory"
    ratios = {name: estimates[name]["batching_ratio"]["value"] for name in names if "batching_ratio" in estimates[name]}
    assert ratios and all(value > 1 for value in ratios.values())


@pytest.mark.unit
def test_test_outcomes_are_read_from_the_junit_report_or_the_verbose_output(tmp_path):
    junit = tmp_path / "report.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_gpu" name="test_a[w]" time="1"/>'
        '<testcase classname="tests.test_gpu" name="test_b[w]" time="1"><failure message="assert 1 == 2"/></testcase>'
        '<testcase classname="tests.test_gpu" name="test_c[w]" time="0"><skipped message="no CUDA"/></testcase>'
        "</testsuite></testsuites>"
    )
    assert gpu_check.parse_junit(junit) == [
        {"test": "tests.test_gpu::test_a[w]", "status": "passed", "reason": ""},
        {"test": "tests.test_gpu::test_b[w]", "status": "failed", "reason": "assert 1 == 2"},
        {"test": "tests.test_gpu::test_c[w]", "status": "skipped", "reason": "no CUDA"},
    ]
    output = "tests/test_gpu.py::test_a[w] PASSED [ 50%]\ntests/test_gpu.py::test_b[w] ERROR [100%]\n"
    assert [test["status"] for test in gpu_check.parse_verbose(output)] == ["passed", "failed"]
    # A tier killed at its timeout: what pytest printed before is kept.
    (tmp_path / "tests-w.pytest.log").write_text(output + "tests/test_gpu.py::test_c[w] ")
    killed = gpu_check.PartOutcome("tests", "w", "timeout", 120.0, reason="no result after 120 s: killed")
    cut = gpu_check.tests_outcome(killed, tmp_path)
    assert cut.data["counts"] == {"passed": 1, "failed": 1, "skipped": 0} and "did not run" in cut.data["cut"]


@pytest.mark.unit
def test_the_report_labels_each_figure_with_its_device_and_the_estimate_beside_it():
    report = {
        "device": "cuda",
        "label": "GPU",
        "started": "2026-12-06T00:00:00Z",
        "seconds": 1.0,
        "budget_seconds": 480,
        "host": {
            "gpus": [{"name": "NVIDIA H100"}],
            "driver": "580.1",
            "torch": "2.11.0",
            "torch_pin": "2.13.0",
            "torch_matches_pin": False,
            "python": "3.12.3",
            "torch_cuda": "12.8",
        },  # fmt: skip
        "workers": {"w": {**_plan(runtime="onnxruntime").__dict__, "job": {"a": 1}}},
        "estimates": {
            "w": {
                "gpu_memory": {"text": "16 GB", "source": "README.md"},
                "onnx_provider": {"text": "CUDAExecutionProvider", "source": "README.md"},
            }
        },  # fmt: skip
        "parts": [
            {
                "part": "measure",
                "worker": "w",
                "status": "ok",
                "seconds": 3.0,
                "reason": "",
                "log_tail": "",
                "data": {
                    "memory_kind": "cuda_allocated",
                    "load_seconds": 2.0,
                    "onnx_providers": ["CUDAExecutionProvider"],
                    "memory_mib": {"after_load": 900.0, "peak": 1200.0, "after_job": 950.0, "after_unload": 10.0},
                    "first": {"seconds": 2.0, "audio_seconds": 4.0, "rtf": 2.0},
                    "warm": {"seconds": 1.0, "audio_seconds": 4.0, "rtf": 4.0},
                },
            },  # fmt: skip
            {
                "part": "tests",
                "worker": "w",
                "status": "timeout",
                "seconds": 120.0,
                "reason": "killed",
                "log_tail": "",
                "data": {},
            },  # fmt: skip
        ],
    }
    rows = gpu_check.figures(report)
    assert {row["device"] for row in rows} == {"GPU"}
    by_name = {row["figure"]: row for row in rows}
    assert by_name["memory peak during the job"]["estimate"] == "16 GB"
    assert by_name["ONNX execution provider"]["value"] == "CUDAExecutionProvider"
    assert by_name["memory after load"]["unit"] == "MiB (GPU: in use on the device)"
    report["figures"] = rows
    text = gpu_check.markdown(report)
    assert "differs from the pin, torch==2.13.0" in text
    assert "| tests | w | timeout | 120.0 | killed |" in text


@pytest.mark.unit
def test_the_wheelhouse_holds_the_locked_packages_but_torch_and_the_cuda_libraries():
    pins = gpu_check_env.check_pins()
    for name in ("torch", "triton", "nvidia-cublas", "cuda-bindings", "networkx"):
        assert name not in pins
    for name in ("numpy", "transformers", "safetensors", "runpod", "onnxruntime-gpu", "torchaudio"):
        assert name in pins
    assert set(gpu_check_env.dev_pins()) == {"pytest", "onnx"}
    exact, extras = gpu_check_env.download_commands(
        Path("/w"), "3.12", Path("/pins"), Path("/extras"), Path("/constraints")
    )
    assert exact[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in exact and exact[-2:] == ["-r", "/pins"]
    for command in (exact, extras):
        assert "--only-binary=:all:" in command
        assert command[command.index("--python-version") + 1] == "3.12"
        assert command[command.index("--abi") + 1] == "cp312"
        assert "manylinux_2_28_x86_64" in command and "manylinux2014_x86_64" in command
    assert "--no-deps" not in extras and extras[-4:] == ["-c", "/constraints", "-r", "/extras"]
    install = gpu_check_env.install_command("py", {"a": "1"}, Path("/w"), no_deps=True)
    assert install[-4:] == ["--no-index", "--find-links", "/w", "a==1"] and "--no-deps" in install


@pytest.mark.unit
def test_a_hosts_pip_freeze_is_read_by_normalised_name(tmp_path):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text(
        "# the GPU host\nTyping_Extensions==4.16.0\nJinja2==3.1.6\ntorch==2.11.0+cu130\n"
        "-e git+https://example.invalid/x.git#egg=x\nmylib @ file:///opt/mylib\nnumpy\n\n"
    )
    assert gpu_check_env.host_packages(freeze) == {
        "typing-extensions": "4.16.0",
        "jinja2": "3.1.6",
        "torch": "2.11.0+cu130",
        "mylib": "",
        "numpy": "",
    }


@pytest.mark.unit
def test_a_venv_made_on_another_python_is_made_anew_and_sees_this_ones_packages(tmp_path):
    venv = tmp_path / "venv"
    python = gpu_check_env.create_venv(venv)
    pth = next(venv.glob(f"lib/python*/site-packages/{gpu_check_env.HOST_SITE_PTH}")).read_text()
    assert all(f"site.addsitedir({folder!r})" in pth for folder in gpu_check_env.host_site_dirs())
    sees = subprocess.run([python, "-c", "import pytest; print(pytest.__file__)"], **_TEXT).stdout
    assert sees.startswith(str(Path(pytest.__file__).parents[1]))  # this python's pytest, not installed again
    mark = venv / gpu_check_env.HOST_MARK
    mark.write_text(json.dumps({"executable": "/opt/other/bin/python3", "version": "3.12.1"}))
    (venv / "left-by-the-other").write_text("")
    gpu_check_env.create_venv(venv)
    assert not (venv / "left-by-the-other").exists()
    assert json.loads(mark.read_text())["executable"] == sys.executable


@pytest.mark.unit
def test_only_the_pins_the_host_lacks_are_installed():
    from importlib import metadata

    have = metadata.version("pytest")
    assert gpu_check_env.missing_pins(sys.executable, {"pytest": have}) == {}
    assert gpu_check_env.missing_pins(sys.executable, {"pytest": "0.0.1", "no-such-package": "1"}) == {
        "pytest": "0.0.1",
        "no-such-package": "1",
    }
    assert gpu_check_env.torch_pin() == gpu_check._pins(REPO / "shared" / "constraints.txt")["torch"]


_OUTPUT = {"capture_output": True, "text": True}
_TEXT = _OUTPUT | {"check": True}


def _offline(command: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command with the network off: in a network namespace of its own (only loopback) where `unshare -rn`
    works, else with pip told there is no index and every proxy pointed at a closed port."""
    # No pip configuration either: this machine's pip.conf names local find-links and a constraints file.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")} | {
        "PIP_CONFIG_FILE": os.devnull
    }
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False).returncode == 0:
        return ["unshare", "-rn", *command], env
    dead = "http://127.0.0.1:9"
    return command, env | {"PIP_NO_INDEX": "1", "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "NO_PROXY": ""}


@pytest.mark.integration
def test_offline_the_check_installs_from_a_wheelhouse_on_the_hosts_own_torch_and_runs(tmp_path):
    """Issue 30's offline path, whole, for this Python. The host: a python that is itself a venv (as a pod image's
    /opt/.../.venv/bin/python3 is) holding torch and one pinned package at another version. `make wheelhouse
    HOST_PACKAGES=<its pip freeze>` downloads everything else the check needs (PyPI); with the network off, the
    check's venv is built on the host from the wheelhouse alone, torch and what the host ships are the host's (not
    installed again), and the check then runs end to end offline."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    house, host, check = tmp_path / "wheels", tmp_path / "host", tmp_path / "check"
    subprocess.run([sys.executable, "-m", "venv", str(host)], check=True, timeout=300)
    torch_pin, pins = gpu_check_env.torch_pin(), gpu_check_env.check_pins()
    older = "0.7.2"  # loguru: the host ships it at another version than the pin
    assert pins["loguru"] != older
    wheels = {"PIP_FIND_LINKS": "/opt/wheels"} if Path("/opt/wheels").is_dir() else {}  # as the Makefile does
    install = [host / "bin" / "python", "-m", "pip", "install", "-q", f"torch=={torch_pin}", f"loguru=={older}"]
    subprocess.run(install, check=True, timeout=900, env=wheels | os.environ)
    freeze = tmp_path / "host-freeze.txt"
    freeze.write_text(subprocess.run([host / "bin" / "python", "-m", "pip", "freeze"], **_TEXT).stdout)
    shipped = gpu_check_env.host_packages(freeze)
    assert shipped["loguru"] == older and "torch" in shipped

    command = [sys.executable, "scripts/gpu_check_env.py", "wheelhouse", "--dest", str(house)]
    command += ["--python-version", version, "--host-packages", str(freeze)]
    if (local := REPO.parent / "shared" / "wheels").is_dir():
        command += ["--local-wheels", str(local)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"MB for Python {version}" in done.stdout and f"loguru {older} (pin {pins['loguru']})" in done.stdout
    held = {canonicalize_name(parse_wheel_filename(path.name)[0]) for path in house.glob("*.whl")}
    assert not {name for name in held if gpu_check_env.HOST_PROVIDED.match(name)}  # no torch, no CUDA
    assert not held & set(shipped), "the wheelhouse holds what the host ships"
    assert {"transformers", "onnxruntime-gpu", "pytest", "onnx"} <= held
    pinned_loguru = tmp_path / "pinned-loguru"  # for the check venv's own installs winning over the host's, below
    download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(pinned_loguru)]
    subprocess.run([*download, f"loguru=={pins['loguru']}"], check=True, timeout=300)

    command, env = _offline([str(host / "bin" / "python"), "scripts/gpu_check_env.py", "venv", "--venv", str(check)])
    done = subprocess.run([*command, "--wheelhouse", str(house)], cwd=REPO, env=env, timeout=900, **_OUTPUT)
    assert done.returncode == 0, done.stderr[-3000:]
    python = done.stdout.strip().splitlines()[-1]
    assert python == str(check / "bin" / "python")
    assert f"host torch {torch_pin}" in done.stderr and "installing" in done.stderr
    assert "the host's version, not the pin: " in done.stderr and f"loguru {older} (pin" in done.stderr
    assert not list(check.glob("lib/python*/site-packages/torch")), "torch was installed again"
    where = subprocess.run(
        [
            python,
            "-c",
            "import torch, transformers, loguru; print(torch.__file__, transformers.__file__, loguru.__file__)",
        ],
        **_TEXT,
    ).stdout.split()
    assert where[0].startswith(str(host)) and where[1].startswith(str(check)) and where[2].startswith(str(host))
    differ = {name for name, have in shipped.items() if name in pins and have != pins[name]}
    assert set(gpu_check_env.missing_pins(python, pins)) == differ
    # Every pin comes from the check venv or the host venv, none from the base interpreter the host venv hides.
    locate = "import sys; from importlib import metadata as m; print(*(m.distribution(n).locate_file('')"
    locate += " for n in sys.argv[1:]))"
    folders = subprocess.run([python, "-c", locate, *pins], **_TEXT).stdout.split()
    assert all(folder.startswith((str(check), str(host))) for folder in folders), folders
    # What the check venv installs wins over the host's copy, which stays.
    command, env = _offline([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--find-links"])
    subprocess.run([*command, str(pinned_loguru), f"loguru=={pins['loguru']}"], env=env, check=True, timeout=300)
    versions = "from importlib import metadata; import loguru; print(loguru.__file__, metadata.version('loguru'))"
    assert subprocess.run([python, "-c", versions], **_TEXT).stdout.split()[1] == pins["loguru"]
    assert subprocess.run([python, "-c", versions], **_TEXT).stdout.split()[0].startswith(str(check))
    assert subprocess.run([host / "bin" / "python", "-c", versions], **_TEXT).stdout.split()[1] == older

    out = tmp_path / "report"
    command, env = _offline([python, "scripts/gpu_check.py", "--workers", f"{BATCHING_WORKER},{ONNX_WORKER}"])
    command += ["--device", "cpu", "--out", str(out), "--volume", str(tmp_path / "volume")]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["host"]["torch_file"].startswith(str(host)) and report["host"]["torch_matches_pin"]
    assert report["host"]["executable"] == python
    failed = [part for part in report["parts"] if part["status"] not in ("ok", "skipped")]
    assert not failed, failed
    for worker in (BATCHING_WORKER, ONNX_WORKER):
        assert {part["part"] for part in report["parts"] if part["worker"] == worker and part["status"] == "ok"} >= {
            "build",
            "measure",
            "tests",
        }


@pytest.mark.unit
def test_a_worker_that_cannot_be_planned_is_named_with_its_error(tmp_path):
    command = [sys.executable, "scripts/gpu_check.py", "part", "plan", "--worker", "no-such-worker", "--device", "cpu"]
    outcome = gpu_check.run_part("plan", None, command + ["--volume", str(tmp_path)], 60, tmp_path)
    assert outcome.status == "ok" and outcome.data["plans"] == {}
    assert outcome.data["errors"]["no-such-worker"].startswith("ValueError: unknown worker 'no-such-worker'")
