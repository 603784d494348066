"""The environment `make gpu-check` runs in: the host's own CUDA torch when it has one, and offline installs.

    python3 scripts/gpu_check_env.py has-cuda-torch                # exit 0 when this python imports a CUDA torch
    python3 scripts/gpu_check_env.py venv --venv DIR [--wheelhouse DIR]
        # a venv that sees this python's packages (the host's torch, its CUDA libraries and whatever else it
        # carries), installing only the pinned packages it lacks; prints the venv's python last
    python3 scripts/gpu_check_env.py wheelhouse --dest DIR [--python-version 3.12] [--host-packages FILE]
        # on a networked machine: every wheel gpu-check needs for that Python, but torch and the CUDA libraries;
        # with the host's `pip freeze` in FILE, none of what the host already ships either (its versions are used)

Standard library only: it runs on the host's python before anything is installed. What gpu-check needs is every
worker's image lock (handlers/*/requirements*.lock: exact pins) less what a CUDA torch host already carries:
torch, triton, the nvidia-* and cuda-* CUDA libraries, and the packages only they pull in (sympy, networkx, ...,
read from the locks' "via" lines); plus the test tier's pytest and the tiny DiffSinger banks' onnx exporter
(requirements-dev.txt), and the packages PyPI lacks (handlers/*/requirements-git.txt) from LOCAL_WHEELS.
Everything goes in with --no-deps at the locked versions, so pip never reaches for torch. The code must run on
torch 2.11 and Python 3.12 (what CUDA pod images commonly carry): the venv step says when the host's torch
differs from shared/constraints.txt's pin.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HANDLERS = REPO / "handlers"
# What a CUDA torch host already has: never downloaded, never installed over.
HOST_PROVIDED = re.compile(r"^(torch|triton|nvidia-.*|cuda-bindings|cuda-pathfinder|cuda-toolkit)$")
# From requirements-dev.txt: the test tier (pytest) and the tiny DiffSinger banks (exported to ONNX from torch).
CHECK_EXTRAS = ("pytest", "onnx")
GLIBC = (2, 35)  # the newest manylinux tag taken: Ubuntu 22.04's glibc (RunPod's CUDA images)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock_entries(path: Path) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, the names/files it is there for), from one lock file."""
    entries: dict[str, tuple[str, set[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        found = _PIN.match(line)
        if found:
            current = normalise(found.group(1))
            entries[current] = (found.group(2), set())
            continue
        stripped = line.strip()
        if current and stripped.startswith("#"):
            words = stripped.lstrip("#").strip().removeprefix("via").strip()
            if words:
                entries[current][1].add(words if words.startswith(("-r", "-c")) else normalise(words))
        elif stripped and not stripped.startswith("--hash"):
            current = None
    return entries


def check_pins(handlers: Path = HANDLERS) -> dict[str, str]:
    """Every locked package gpu-check needs, name -> version: the union of the workers' locks less what a CUDA torch
    host provides and what only that pulls in. Fails on two versions of one name (the locks share constraints)."""
    versions: dict[str, str] = {}
    wanted_by: dict[str, set[str]] = {}
    for path in sorted(handlers.glob("*/requirements*.lock")):
        for name, (version, via) in _lock_entries(path).items():
            if versions.setdefault(name, version) != version:
                raise SystemExit(f"{path}: {name}=={version}, another lock has {versions[name]}")
            wanted_by.setdefault(name, set()).update(via)
    dropped = {name for name in versions if HOST_PROVIDED.match(name)}
    changed = True
    while changed:  # what only dropped packages need is dropped too
        changed = False
        for name, via in wanted_by.items():
            if name not in dropped and via and via <= dropped:
                dropped.add(name)
                changed = True
    return {name: version for name, version in sorted(versions.items()) if name not in dropped}


def dev_pins(path: Path = REPO / "requirements-dev.txt") -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        found = _PIN.match(line.strip())
        if found and normalise(found.group(1)) in CHECK_EXTRAS:
            pins[normalise(found.group(1))] = found.group(2)
    return pins


def git_requirements(handlers: Path = HANDLERS) -> dict[str, tuple[str, str]]:
    """Packages PyPI lacks: name -> (version, archive URL), from handlers/*/requirements-git.txt."""
    found = {}
    for path in sorted(handlers.glob("*/requirements-git.txt")):
        for line in path.read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)\s*@\s*(\S+)", line.strip())
            if match:
                found[normalise(match.group(1))] = (match.group(2), match.group(3))
    return found


def platform_args(python_version: str) -> list[str]:
    major, minor = python_version.split(".")[:2]
    platforms = [f"manylinux_2_{n}_x86_64" for n in range(GLIBC[1], 16, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    args = ["--only-binary=:all:", "--python-version", f"{major}.{minor}", "--implementation", "cp"]
    args += ["--abi", f"cp{major}{minor}"]
    for platform in platforms:
        args += ["--platform", platform]
    return args


def download_commands(dest: Path, python_version: str, requirements: Path, extras: Path, constraints: Path) -> list:
    """The two `pip download` commands: the locked packages exactly (--no-deps), then pytest and onnx with their
    dependencies held to the same pins (-c)."""
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--dest", str(dest)]
    platform = platform_args(python_version)
    return [
        [*pip, "--no-deps", *platform, "-r", str(requirements)],
        [*pip, *platform, "-c", str(constraints), "-r", str(extras)],
    ]


def wheel_names(folder: Path) -> dict[str, Path]:
    """The normalised distribution name of each wheel in `folder`."""
    return {normalise(path.name.split("-")[0]): path for path in folder.glob("*.whl")}


def _size(folder: Path) -> tuple[int, list[tuple[int, str]]]:
    files = [(path.stat().st_size, path.name) for path in folder.iterdir() if path.is_file()]
    return sum(size for size, _ in files), sorted(files, reverse=True)


def host_packages(path: Path) -> dict[str, str]:
    """name -> version (or "") from a host's `pip freeze` / `pip list --format=freeze`, or from bare names."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*(\S+))?", line.strip())
        if match and not line.lstrip().startswith(("#", "-")):
            found[normalise(match.group(1))] = match.group(2) or ""
    return found


def wheelhouse(
    dest: Path, python_version: str, local_wheels: Path | None, exclude: set[str], host: dict[str, str]
) -> int:
    """`exclude`: names left out on request; `host`: what the target host ships (left out, its versions used)."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted, extras = check_pins(), dev_pins()
    pinned = wanted | extras | {name: version for name, (version, _) in git_requirements().items()}
    shipped = sorted(set(pinned) & set(host))
    if shipped:
        differ = [
            f"{name} {host[name] or '?'} (pin {pinned[name]})"
            for name in shipped
            if host[name].split("+")[0] != pinned[name]
        ]
        print(f"left out, the host ships them: {len(shipped)} package(s); at another version there: {len(differ)}")
        for text in differ:
            print(f"  {text}")
    pins = {name: version for name, version in wanted.items() if name not in exclude and name not in host}
    extras = {name: version for name, version in extras.items() if name not in exclude and name not in host}
    with tempfile.TemporaryDirectory() as scratch:
        requirements, extra_file, constraints = (Path(scratch) / name for name in ("pins", "extras", "constraints"))
        requirements.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
        extra_file.write_text("".join(f"{name}=={version}\n" for name, version in extras.items()))
        constraints.write_text(requirements.read_text())
        commands = download_commands(dest, python_version, requirements, extra_file, constraints)
        if pins:
            _download_exact(commands[0], requirements, dest)
        if extras:
            subprocess.run(commands[1], check=True)
    for name, path in wheel_names(dest).items():  # the extras' own dependencies the host ships
        if name in host:
            path.unlink()
    for name, (version, url) in git_requirements().items():
        if name in exclude or name in host:
            continue
        local = sorted((local_wheels or Path("/nonexistent")).glob(f"{name}-{version}-*.whl"))
        if local:
            shutil.copy2(local[-1], dest)
            print(f"{name}=={version}: from {local[-1]}")
        else:  # a pure-Python archive: its wheel fits every Python 3
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dest), url], check=True)
    total, files = _size(dest)
    print(f"wheelhouse {dest}: {len(files)} files, {total / 1e6:.1f} MB for Python {python_version}")
    for size, name in files[:8]:
        print(f"  {size / 1e6:7.1f} MB  {name}")
    if total > 50e6:
        print(f"over 50 MB: the largest above dominate ({sum(s for s, _ in files[:5]) / total:.0%} in five files)")
    return 0


def _download_exact(command: list[str], requirements: Path, dest: Path) -> None:
    """pip download; a pin published only as a source archive is built into a wheel here (pure Python), once."""
    built: set[str] = set()
    while True:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        missing = re.search(r"No matching distribution found for ([A-Za-z0-9._-]+)==(\S+)", done.stderr)
        if not missing or normalise(missing.group(1)) in built:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
            raise SystemExit(f"pip download failed ({done.returncode})")
        name, version = missing.groups()
        built.add(normalise(name))
        print(f"{name}=={version}: no wheel for that Python on PyPI; building it from its source archive")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dest), f"{name}=={version}"], check=True
        )
        remaining = [
            line for line in requirements.read_text().splitlines() if normalise(line.split("==")[0]) not in built
        ]
        requirements.write_text("".join(line + "\n" for line in remaining))


# ---------------------------------------------------------------- the venv on the host's torch

_PROBE = """
import json, sys
from importlib import metadata
wanted = json.loads(sys.argv[1])
missing = {}
for name, version in wanted.items():
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != version:
        missing[name] = have
print(json.dumps(missing))
"""


def unmet_pins(python: str, pins: dict[str, str]) -> dict[str, str | None]:
    """The pins `python` does not satisfy at their exact version: name -> the version it has (None: absent)."""
    done = subprocess.run([python, "-c", _PROBE, json.dumps(pins)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def installed_versions(python: str, names: Iterable[str]) -> dict[str, str | None]:
    """name -> the version `python` has (None: absent). No version is "": the probe reports every name."""
    return unmet_pins(python, dict.fromkeys(names, ""))


def missing_pins(python: str, pins: dict[str, str]) -> dict[str, str]:
    """The pins `python` does not already satisfy at their exact version, with the version wanted."""
    return {name: pins[name] for name in unmet_pins(python, pins)}


def torch_facts(python: str) -> dict | None:
    probe = "import json, torch; print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda}))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else None


def torch_pin() -> str | None:
    for line in (REPO / "shared" / "constraints.txt").read_text().splitlines():
        if line.startswith("torch=="):
            return line.split("==", 1)[1].strip()
    return None


def install_command(python: str, names: dict[str, str], wheelhouse: Path | None, no_deps: bool) -> list[str]:
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if no_deps:
        command.append("--no-deps")
    if wheelhouse is not None:
        command += ["--no-index", "--find-links", str(wheelhouse)]
    return command + [f"{name}=={version}" for name, version in names.items()]


# A pin, and the distribution a host may ship in its place (the same module, another build).
STAND_INS = {"onnxruntime-gpu": "onnxruntime"}
HOST_SITE_PTH = "_gpu_check_host_site.pth"
HOST_MARK = "gpu-check-host.json"  # which python the venv was made on: another one makes it anew


def host_site_dirs() -> list[str]:
    """The package folders this python sees: its own site-packages (a venv's, when it is one), the base
    interpreter's when that venv includes them, the user's, Debian's dist-packages."""
    return [path for path in dict.fromkeys(sys.path) if Path(path).name in ("site-packages", "dist-packages")]


def create_venv(venv: Path) -> Path:
    """A venv that sees what this python sees, and no more. Not `--system-site-packages`: that shows the base
    interpreter's packages, which a host that is itself a venv (a pod image's /opt/.../.venv/bin/python3 holding
    torch) hides, and hides the host venv's own. A .pth in the new venv adds the host's folders after the venv's own
    (what is installed there wins). Without ensurepip (Debian's python3 without python3-venv) the venv has no pip of
    its own and uses the host's."""
    python = venv / "bin" / "python"
    mark = {"executable": sys.executable, "version": sys.version}
    made_on = venv / HOST_MARK
    if python.exists() and (not made_on.is_file() or json.loads(made_on.read_text()) != mark):
        print(f"{venv}: made on another python; making it anew", file=sys.stderr)
        shutil.rmtree(venv)
    if not python.exists():
        command = [sys.executable, "-m", "venv", str(venv)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 and "ensurepip" in done.stdout + done.stderr:
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([*command, "--without-pip"], check=True)
        elif done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()[-1000:]}")
        made_on.write_text(json.dumps(mark))
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in host_site_dirs())
    (Path(purelib) / HOST_SITE_PTH).write_text(lines)
    if subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, check=False).returncode != 0:
        raise SystemExit(f"{sys.executable} has neither ensurepip nor pip: install python3-venv or pip there")
    return python


def prepare_venv(venv: Path, wheelhouse: Path | None) -> Path:
    """A venv on this python that sees its site-packages (the host's torch), with the pinned packages it lacks."""
    python = create_venv(venv)
    facts = torch_facts(str(python))
    pin = torch_pin()
    if facts:
        note = "" if facts["version"].split("+")[0] == pin else f"; WARNING: differs from the pin torch=={pin}"
        print(f"host torch {facts['version']} (CUDA {facts['cuda']}){note}", file=sys.stderr)
    pins, extras = check_pins(), dev_pins()
    git = {name: version for name, (version, _) in git_requirements().items()}
    unmet = unmet_pins(str(python), pins | git)
    missing = {name: (pins | git)[name] for name in unmet}
    if missing:
        print(f"installing {len(missing)} missing package(s) of {len(pins) + len(git)}", file=sys.stderr)
        if wheelhouse is None:  # from PyPI; the packages PyPI lacks come from their archives
            urls = git_requirements()
            index = {name: version for name, version in missing.items() if name not in urls}
            subprocess.run(install_command(str(python), index, None, no_deps=True), check=True)
            for name in set(missing) & set(urls):
                subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", urls[name][1]], check=True)
        else:
            held = set(wheel_names(wheelhouse))
            hosts = sorted(name for name in set(missing) - held if unmet[name])
            if hosts:  # left out as the host ships them (--host-packages): the host's version is used
                versions = ", ".join(f"{name} {unmet[name]} (pin {missing[name]})" for name in hosts)
                print(f"the host's version, not the pin: {versions}", file=sys.stderr)
            absent = sorted(name for name in set(missing) - held if not unmet[name])
            if absent:  # left out of it (--exclude): the parts that need them fail, and say why
                print(f"not in the wheelhouse, not installed: {', '.join(absent)}", file=sys.stderr)
            stand_ins = {name: STAND_INS[name] for name in absent if name in STAND_INS}
            have = installed_versions(str(python), stand_ins.values())
            for pin_name, name in stand_ins.items():
                if have[name]:
                    print(f"{pin_name}: the host's {name} {have[name]} stands in (the same module)", file=sys.stderr)
            present = {name: version for name, version in missing.items() if name in held}
            if present:
                subprocess.run(install_command(str(python), present, wheelhouse, no_deps=True), check=True)
        if "torchaudio" in missing:  # built against another torch: only its pure-Python parts are used
            for library in venv.glob("lib/python*/site-packages/torchaudio/lib/*.so"):
                library.unlink()
    extras_missing = missing_pins(str(python), extras)
    if wheelhouse is not None:  # pytest and onnx with their dependencies; the host's own where it ships them
        held = wheel_names(wheelhouse)
        extras_missing = {name: version for name, version in extras_missing.items() if name in held}
    if extras_missing:
        subprocess.run(install_command(str(python), extras_missing, wheelhouse, no_deps=False), check=True)
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("has-cuda-torch", help="exit 0 when this python imports a CUDA build of torch")
    venv = commands.add_parser("venv", help="the venv on this python's torch; prints its python")
    venv.add_argument("--venv", type=Path, default=REPO / ".cache" / "venv-gpu-check")
    venv.add_argument("--wheelhouse", type=Path, default=None)
    house = commands.add_parser("wheelhouse", help="download what gpu-check needs, torch and CUDA excepted")
    house.add_argument("--dest", type=Path, required=True)
    house.add_argument("--python-version", default="3.12")
    house.add_argument("--local-wheels", type=Path, default=None, help="where wheels of packages PyPI lacks are")
    house.add_argument(
        "--host-packages", type=Path, default=None, help="the GPU host's `pip freeze`: what it ships is left out"
    )
    house.add_argument(
        "--exclude", default="", help="comma-separated names to leave out (e.g. onnxruntime-gpu: 256 MB)"
    )
    args = parser.parse_args(argv)
    if args.command == "has-cuda-torch":
        facts = torch_facts(sys.executable)
        return 0 if facts and facts["cuda"] else 1
    if args.command == "venv":
        print(prepare_venv(args.venv.resolve(), args.wheelhouse.resolve() if args.wheelhouse else None))
        return 0
    local = args.local_wheels.resolve() if args.local_wheels else None
    exclude = {normalise(name) for name in args.exclude.split(",") if name}
    host = host_packages(args.host_packages) if args.host_packages else {}
    return wheelhouse(args.dest.resolve(), args.python_version, local, exclude, host)


if __name__ == "__main__":
    sys.exit(main())
