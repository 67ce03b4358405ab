"""GPU discovery: NVML faked at its boundary (a pynvml-shaped object); the catalog for --gpu."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from openai_server.errors import ProfileError
from openai_server.preflight import gpus


class FakeNvml:
    """pynvml's shape: the functions we call, answering from a table (or failing like pynvml)."""

    nvmlMemory_v2 = object()

    def __init__(self, devices, fail_init=False, v2=True):
        self.devices, self.fail_init, self.v2 = devices, fail_init, v2
        self.shut = False

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.devices[i]

    def nvmlDeviceGetName(self, h):
        return h["name"].encode()

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        if version is not None and not self.v2:
            raise RuntimeError("Function Not Found")
        return SimpleNamespace(
            total=h["total"], free=h["free"], used=h["total"] - h["free"], reserved=h["reserved"]
        )

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return h["cc"]

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in h["procs"]]

    def nvmlDeviceGetUUID(self, h):
        return h.get("uuid", "GPU-00000000").encode()


H200 = {
    "name": "NVIDIA H200",
    "total": 150_754_820_096,
    "free": 150_109_880_320,
    "reserved": 644_939_776,
    "cc": (9, 0),
    "procs": [],
}


def test_nvml_total_less_reserved_is_torchs_total():
    hw = gpus.detect(FakeNvml([H200]))
    assert hw.count == 1 and hw.source == "NVML"
    assert hw.gpus[0].total_bytes == 150_109_880_320  # torch.cuda.mem_get_info()[1], seen here
    assert hw.gpus[0].compute_capability == (9, 0)


def test_old_driver_without_v2_memory_query_uses_the_measured_ratio():
    hw = gpus.detect(FakeNvml([H200], v2=False))
    assert hw.gpus[0].total_bytes == pytest.approx(150_109_880_320, rel=0.001)


def test_no_nvml_library_means_no_gpus_and_shutdown_is_safe():
    nvml = FakeNvml([], fail_init=True)
    assert gpus.detect(nvml).count == 0


def test_processes_holding_the_gpu_are_named_from_proc():
    me = os.getpid()
    busy = dict(H200, free=10 * 2**30, procs=[(me, 100 * 2**30), (999_999_999, None)])
    hw = gpus.detect(FakeNvml([busy]))
    procs = hw.gpus[0].processes
    # what /proc says (under pytest-xdist a worker's title replaces "python ...")
    cmdline = Path(f"/proc/{me}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    assert procs[0].pid == me and procs[0].used_bytes == 100 * 2**30
    assert procs[0].cmdline and cmdline.startswith(procs[0].cmdline[:40])
    assert procs[1].cmdline == "" and procs[1].used_bytes is None


def test_vllm_engine_processes_are_recognised():
    assert gpus.GpuProcess(1, None, "VLLM::EngineCore").looks_like_vllm
    assert gpus.GpuProcess(1, None, "python -m vllm.entrypoints.openai.api_server").looks_like_vllm
    assert not gpus.GpuProcess(1, None, "python train.py").looks_like_vllm


@pytest.mark.parametrize(
    ("spec", "name", "gib", "cc", "count"),
    [
        ("T4", "Tesla T4", 14.75, (7, 5), 1),
        ("t4", "Tesla T4", 14.75, (7, 5), 1),
        ("H100", "NVIDIA H100 80GB", 79.18, (9, 0), 1),
        ("A100-80:2", "NVIDIA A100 80GB", 79.15, (8, 0), 2),
        ("rtx 4090", "NVIDIA GeForce RTX 4090", 23.65, (8, 9), 1),
        ("L40S:4", "NVIDIA L40S", 44.52, (8, 9), 4),
    ],
)
def test_catalog_gpus_by_name_and_count(spec, name, gib, cc, count):
    hw = gpus.planned(spec)
    assert hw.count == count and hw.planned
    assert hw.gpus[0].name == name and hw.gpus[0].compute_capability == cc
    assert hw.gpus[0].total_bytes / 2**30 == pytest.approx(gib, abs=0.01)


@pytest.mark.parametrize("spec", ["B9000", "T4:0", "T4:x"])
def test_bad_gpu_spec_is_a_profile_error(spec):
    with pytest.raises(ProfileError):
        gpus.planned(spec)


@pytest.mark.parametrize(
    ("spec", "seen"),
    [
        (None, ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]),
        ("1", ["GPU-bbbb"]),
        ("2,0", ["GPU-cccc", "GPU-aaaa"]),
        ("GPU-bb", ["GPU-bbbb"]),  # a UUID prefix, as CUDA takes it
        ("0,7,1", ["GPU-aaaa"]),  # CUDA stops at the first device it cannot resolve
        ("", []),
        ("-1", []),
    ],
)
def test_cuda_visible_devices_decides_which_gpus_are_judged(spec, seen):
    # each device's free memory marks it, so the order of what detect returns can be read back
    uuids = ("GPU-aaaa", "GPU-bbbb", "GPU-cccc")
    devices = [dict(H200, uuid=u, free=H200["free"] - i) for i, u in enumerate(uuids)]
    environ = {} if spec is None else {"CUDA_VISIBLE_DEVICES": spec}
    hw = gpus.detect(FakeNvml(devices), environ=environ)
    by_free = {d["free"]: d["uuid"] for d in devices}
    assert [by_free[g.free_bytes] for g in hw.gpus] == seen
