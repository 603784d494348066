"""Which device a worker runs on, decided once at start-up from what the host really offers.

The images install torch from PyPI built for CUDA 13.0: it needs an NVIDIA driver >= 580 and a GPU of
compute capability 7.5 or newer. RunPod schedules workers on hosts with older drivers unless the
endpoint restricts CUDA versions; there `torch.cuda.is_available()` is false, and falling back to the
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

# The oldest Linux driver (major version) each CUDA major needs, and the newest CUDA each driver runs.
MIN_DRIVER = {11: 450, 12: 525, 13: 580}
DRIVER_CUDA = ((580, "13.0"), (575, "12.9"), (570, "12.8"), (560, "12.6"), (555, "12.5"), (550, "12.4"),
               (545, "12.3"), (535, "12.2"), (530, "12.1"), (525, "12.0"), (450, "11.x"))  # fmt: skip
# CUDA 13 builds dropped GPUs below Turing.
MIN_CAPABILITY = {11: (3, 5), 12: (5, 0), 13: (7, 5)}
ENDPOINT_FIX = (
    "set the endpoint's allowed CUDA versions to 13.x only (allowedCudaVersions in the REST API, "
    "minCudaVersion 13.0 in the v2 API, or the CUDA filter in the console)"
)


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: tuple[int, int] | None  # None when the driver does not report it


@dataclass(frozen=True)
class HostFacts:
    gpus: tuple[Gpu, ...]  # NVIDIA GPUs the host shows this container
    driver: str | None  # e.g. "550.54.15"
    torch_cuda: str | None  # CUDA version torch was built for, None for a CPU build
    torch_version: str
    torch_sees_gpu: bool


def _cuda_major(version: str) -> int:
    return int(version.split(".")[0])


def _newest_cuda(driver: str) -> str:
    major = int(driver.split(".")[0])
    return next((cuda for minimum, cuda in DRIVER_CUDA if major >= minimum), "none")


def choose_device(wanted: str, facts: HostFacts) -> str:
    """ "cuda" or "cpu" for DEVICE=auto|cuda|cpu, or a SettingsError that says why not and how to fix it."""
    if wanted == "cpu":
        return "cpu"
    if not facts.gpus and not facts.torch_sees_gpu:
        if wanted == "cuda":
            raise SettingsError("DEVICE=cuda: no NVIDIA GPU is visible to this worker; pick a GPU pool or DEVICE=auto")
        return "cpu"
    torch_build = f"torch {facts.torch_version}"
    if facts.torch_cuda is None:
        raise SettingsError(f"a GPU is present but this image's {torch_build} is a CPU build; rebuild the image")
    needed = MIN_CAPABILITY.get(_cuda_major(facts.torch_cuda), (0, 0))
    for gpu in facts.gpus:
        if gpu.capability is not None and gpu.capability < needed:
            raise SettingsError(
                f"GPU {gpu.name} has compute capability {gpu.capability[0]}.{gpu.capability[1]}; {torch_build} "
                f"(CUDA {facts.torch_cuda}) needs {needed[0]}.{needed[1]} or newer: choose GPU pools of that "
                "generation for this endpoint"
            )
    if facts.torch_sees_gpu:
        return "cuda"
    minimum = MIN_DRIVER.get(_cuda_major(facts.torch_cuda))
    if facts.driver is not None and minimum is not None and int(facts.driver.split(".")[0]) < minimum:
        raise SettingsError(
            f"the host's NVIDIA driver {facts.driver} runs CUDA up to {_newest_cuda(facts.driver)}, but this "
            f"image's {torch_build} is built for CUDA {facts.torch_cuda} and needs driver >= {minimum}; "
            f"{ENDPOINT_FIX}"
        )
    names = ", ".join(gpu.name for gpu in facts.gpus)
    raise SettingsError(
        f"GPU {names} is present (driver {facts.driver or 'unknown'}) but {torch_build} (CUDA "
        f"{facts.torch_cuda}) cannot use it; {ENDPOINT_FIX}"
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


def host_facts() -> HostFacts:
    """What this host offers, read from nvidia-smi (or /proc and /dev without it) and from torch."""
    import torch

    gpus, driver = _nvidia_smi()
    if not gpus and Path("/dev/nvidia0").exists():
        gpus = (Gpu("NVIDIA GPU", None),)
    sees_gpu = torch.cuda.is_available()
    if sees_gpu and not any(gpu.capability for gpu in gpus):
        gpus = tuple(
            Gpu(torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index))
            for index in range(torch.cuda.device_count())
        )
    return HostFacts(gpus, driver or _proc_driver(), torch.version.cuda, torch.__version__, sees_gpu)
