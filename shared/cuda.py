"""Which device a worker runs on, decided once at start-up from what the host really offers.

The images install their inference library from PyPI built for one CUDA major (torch: 13.0, which needs
an NVIDIA driver >= 580 and a GPU of compute capability 7.5 or newer). RunPod schedules workers on hosts
with older drivers unless the endpoint restricts CUDA versions; there the library sees no GPU, and falling back to the
CPU would turn seconds into an hour. So a GPU that is present but unusable, or DEVICE=cuda without a
GPU, is a start-up error that names the driver found, the CUDA version needed and the endpoint setting
that fixes it. DEVICE=auto on a machine with no GPU at all runs on the CPU.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shared.errors import SettingsError
from shared.runtime import Gpu, LibraryFacts, Runtime

# The oldest Linux driver (major version) each CUDA major needs, and the newest CUDA each driver runs.
MIN_DRIVER = {11: 450, 12: 525, 13: 580}
DRIVER_CUDA = ((580, "13.0"), (575, "12.9"), (570, "12.8"), (560, "12.6"), (555, "12.5"), (550, "12.4"),
               (545, "12.3"), (535, "12.2"), (530, "12.1"), (525, "12.0"), (450, "11.x"))  # fmt: skip
# CUDA 13 builds dropped GPUs below Turing.
MIN_CAPABILITY = {11: (3, 5), 12: (5, 0), 13: (7, 5)}


def endpoint_fix(cuda: str) -> str:
    major = _cuda_major(cuda)
    return (
        f"set the endpoint's allowed CUDA versions to {major}.x and newer only (allowedCudaVersions in the REST "
        f"API, minCudaVersion {major}.0 in the v2 API, or the CUDA filter in the console)"
    )


@dataclass(frozen=True)
class HostFacts:
    gpus: tuple[Gpu, ...]  # NVIDIA GPUs the host shows this container
    driver: str | None  # e.g. "550.54.15"
    library: LibraryFacts  # the inference library's build and what it sees


def _cuda_major(version: str) -> int:
    return int(version.split(".")[0])


def _newest_cuda(driver: str) -> str:
    major = int(driver.split(".")[0])
    return next((cuda for minimum, cuda in DRIVER_CUDA if major >= minimum), "none")


def choose_device(wanted: str, facts: HostFacts) -> str:
    """ "cuda" or "cpu" for DEVICE=auto|cuda|cpu, or a SettingsError that says why not and how to fix it."""
    library = facts.library
    if wanted == "cpu":
        return "cpu"
    if not facts.gpus and not library.sees_gpu:
        if wanted == "cuda":
            raise SettingsError("DEVICE=cuda: no NVIDIA GPU is visible to this worker; pick a GPU pool or DEVICE=auto")
        return "cpu"
    if library.cuda is None:
        raise SettingsError(f"a GPU is present but this image's {library.build} is a CPU build; rebuild the image")
    needed = MIN_CAPABILITY.get(_cuda_major(library.cuda), (0, 0))
    for gpu in facts.gpus:
        if gpu.capability is not None and gpu.capability < needed:
            raise SettingsError(
                f"GPU {gpu.name} has compute capability {gpu.capability[0]}.{gpu.capability[1]}; {library.build} "
                f"(CUDA {library.cuda}) needs {needed[0]}.{needed[1]} or newer: choose GPU pools of that "
                "generation for this endpoint"
            )
    if library.sees_gpu:
        return "cuda"
    minimum = MIN_DRIVER.get(_cuda_major(library.cuda))
    if facts.driver is not None and minimum is not None and int(facts.driver.split(".")[0]) < minimum:
        raise SettingsError(
            f"the host's NVIDIA driver {facts.driver} runs CUDA up to {_newest_cuda(facts.driver)}, but this "
            f"image's {library.build} is built for CUDA {library.cuda} and needs driver >= {minimum}; "
            f"{endpoint_fix(library.cuda)}"
        )
    names = ", ".join(gpu.name for gpu in facts.gpus)
    raise SettingsError(
        f"GPU {names} is present (driver {facts.driver or 'unknown'}) but {library.build} (CUDA "
        f"{library.cuda}) cannot use it; {endpoint_fix(library.cuda)}"
    )


def _nvidia_smi() -> tuple[tuple[Gpu, ...], str | None]:
    command = shutil.which("nvidia-smi")
    if command is None:
        return (), None
    query = [command, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return (), None
    gpus, driver = [], None
    for line in done.stdout.splitlines() if done.returncode == 0 else []:
        name, driver, capability = (part.strip() for part in line.split(",", 2))
        major, _, minor = capability.partition(".")
        known = major.isdigit() and minor.isdigit()
        gpus.append(Gpu(name, (int(major), int(minor)) if known else None))
    return tuple(gpus), driver


def _proc_driver() -> str | None:
    version = Path("/proc/driver/nvidia/version")
    if not version.is_file():
        return None
    words = version.read_text().split()
    return next((word for word in words if word[:1].isdigit() and word.count(".") >= 1), None)


def host_facts(runtime: Runtime) -> HostFacts:
    """What this host offers, read from nvidia-smi (or /proc and /dev without it) and from the runtime."""
    gpus, driver = _nvidia_smi()
    if not gpus and Path("/dev/nvidia0").exists():
        gpus = (Gpu("NVIDIA GPU", None),)
    library = runtime.library()
    if library.gpus and not any(gpu.capability for gpu in gpus):
        gpus = library.gpus
    return HostFacts(gpus, driver or _proc_driver(), library)
