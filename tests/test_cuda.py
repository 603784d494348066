"""The device decision at start-up, with the host's facts injected (pure), and read from this host."""

from __future__ import annotations

import pytest

from shared.cuda import HostFacts, choose_device, host_facts
from shared.errors import SettingsError
from shared.runtime import Gpu, LibraryFacts
from shared.torch_runtime import RUNTIME

pytestmark = pytest.mark.unit

A100, P100 = Gpu("NVIDIA A100-SXM4-80GB", (8, 0)), Gpu("Tesla P100-PCIE-16GB", (6, 0))


def facts(gpus=(A100,), driver="580.82.07", torch_cuda="13.0", sees=True) -> HostFacts:
    return HostFacts(tuple(gpus), driver, LibraryFacts("torch 2.13.0", torch_cuda, sees, ()))


def test_a_usable_gpu_is_taken_by_auto_and_cuda():
    assert choose_device("auto", facts()) == choose_device("cuda", facts()) == "cuda"
    assert choose_device("cpu", facts()) == "cpu"  # the operator's choice stands


def test_no_gpu_at_all_is_the_cpu_for_auto_and_an_error_for_cuda():
    none = facts(gpus=(), driver=None, torch_cuda="13.0", sees=False)
    assert choose_device("auto", none) == "cpu"
    with pytest.raises(SettingsError, match="DEVICE=cuda: no NVIDIA GPU is visible to this worker"):
        choose_device("cuda", none)


def test_an_old_driver_names_what_it_runs_what_is_needed_and_the_endpoint_fix():
    old = facts(driver="550.54.15", sees=False)
    for wanted in ("auto", "cuda"):  # never a silent fall-back to the CPU
        with pytest.raises(SettingsError) as caught:
            choose_device(wanted, old)
        assert str(caught.value) == (
            "the host's NVIDIA driver 550.54.15 runs CUDA up to 12.4, but this image's torch 2.13.0 is built for "
            "CUDA 13.0 and needs driver >= 580; set the endpoint's allowed CUDA versions to 13.x and newer only "
            "(allowedCudaVersions in the REST API, minCudaVersion 13.0 in the v2 API, or the CUDA filter in the "
            "console)"
        )


def test_a_gpu_too_old_for_cuda_13_is_named():
    with pytest.raises(SettingsError, match=r"GPU Tesla P100-PCIE-16GB has compute capability 6\.0; .* needs 7\.5"):
        choose_device("auto", facts(gpus=(P100,), sees=False))


def test_a_gpu_torch_cannot_use_for_another_reason_still_stops_the_start():
    with pytest.raises(SettingsError, match=r"GPU NVIDIA A100-SXM4-80GB is present \(driver 580.82.07\) but torch"):
        choose_device("auto", facts(sees=False))
    with pytest.raises(SettingsError, match="this image's torch 2.13.0 is a CPU build"):
        choose_device("auto", facts(torch_cuda=None, sees=False))


def test_this_host_reads_consistently():
    here = host_facts(RUNTIME)
    assert choose_device("auto", here) == ("cuda" if here.library.sees_gpu else "cpu")
