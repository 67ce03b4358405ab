"""This host's GPUs as `serve top` shows them (NVML): load, memory and who holds it, power, heat.

A server elsewhere has GPUs NVML cannot see from here: the section says so rather than showing
this host's. The NVML module is a parameter (tests pass a fake of pynvml's shape, as
tests/preflight/test_gpus.py does); every query may fail on its own (a MIG slice has no power
reading, a container no process list), which leaves that figure empty, not the whole GPU.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..preflight.gpus import _processes

# pynvml's constants, written out so that a fake needs none (nvml.h: NVML_TEMPERATURE_GPU = 0,
# NVML_CLOCK_SM = 1)
TEMPERATURE_GPU, CLOCK_SM = 0, 1


@dataclass(frozen=True)
class Holder:
    pid: int
    used_bytes: int | None
    name: str  # the model a vLLM process serves, else the program


@dataclass(frozen=True)
class GpuNow:
    index: int
    name: str
    util_pct: float | None = None
    used_bytes: int | None = None
    total_bytes: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    temp_c: float | None = None
    sm_mhz: float | None = None
    holders: tuple[Holder, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "util_pct": self.util_pct,
                "memory_used_bytes": self.used_bytes, "memory_total_bytes": self.total_bytes,
                "power_w": self.power_w, "power_limit_w": self.power_limit_w,
                "temperature_c": self.temp_c, "sm_clock_mhz": self.sm_mhz,
                "processes": [{"pid": h.pid, "used_bytes": h.used_bytes, "name": h.name}
                              for h in self.holders]}  # fmt: skip


@dataclass(frozen=True)
class GpuSection:
    visible: bool
    reason: str  # why none are shown ("" when shown)
    gpus: tuple[GpuNow, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"visible": self.visible, "reason": self.reason or None,
                "devices": [g.as_json() for g in self.gpus]}  # fmt: skip


REMOTE = "GPUs not visible: the server is on another host"


def read(
    local: bool, nvml: Any = None, name_of: Callable[[int, str], str] | None = None
) -> GpuSection:
    """This host's GPUs when the server is local; else a section that says they are not visible."""
    if not local:
        return GpuSection(False, REMOTE)
    if nvml is None:
        try:
            import pynvml

            nvml = pynvml
        except ImportError:
            return GpuSection(False, "GPUs not visible: the NVML library (nvidia-ml-py) is missing")
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded: a CPU host
        return GpuSection(False, f"GPUs not visible: no NVIDIA driver here ({e})")
    try:
        count = nvml.nvmlDeviceGetCount()
        gpus = tuple(_one(nvml, i, name_of or holder_name) for i in range(count))
        return GpuSection(bool(gpus), "" if gpus else "GPUs not visible: NVML lists none", gpus)
    except Exception as e:
        return GpuSection(False, f"GPUs not visible: NVML failed ({e})")
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _one(nvml: Any, index: int, name_of: Callable[[int, str], str]) -> GpuNow:
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    name = nvml.nvmlDeviceGetName(h)

    def ask(query: Callable[[], Any]) -> Any:
        try:
            return query()
        except Exception:
            return None

    # v2's `used` leaves out the driver's reserve, as nvidia-smi does (seen on an H200: v1 said
    # 9,787,277,312 B used where nvidia-smi said 8,719 MiB; the difference is v2's `reserved`)
    v2 = getattr(nvml, "nvmlMemory_v2", None)
    mem = (v2 is not None and ask(lambda: nvml.nvmlDeviceGetMemoryInfo(h, version=v2))) or ask(
        lambda: nvml.nvmlDeviceGetMemoryInfo(h)
    )
    util = ask(lambda: nvml.nvmlDeviceGetUtilizationRates(h))
    power = ask(lambda: nvml.nvmlDeviceGetPowerUsage(h))  # milliwatts
    limit = ask(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h))
    holders = tuple(
        Holder(p.pid, p.used_bytes, name_of(p.pid, p.cmdline)) for p in _processes(nvml, h)
    )
    return GpuNow(
        index, name.decode() if isinstance(name, bytes) else str(name),
        util_pct=None if util is None else float(util.gpu),
        used_bytes=None if mem is None else int(mem.used),
        total_bytes=None if mem is None else int(mem.total),
        power_w=None if power is None else power / 1000,
        power_limit_w=None if limit is None else limit / 1000,
        temp_c=ask(lambda: float(nvml.nvmlDeviceGetTemperature(h, TEMPERATURE_GPU))),
        sm_mhz=ask(lambda: float(nvml.nvmlDeviceGetClockInfo(h, CLOCK_SM))),
        holders=holders,
    )  # fmt: skip


def served_model(cmdline: str) -> str | None:
    """The model a vLLM command line serves: --served-model-name (what `serve` renders), else
    --model, else `vllm serve MODEL`."""
    try:
        words = shlex.split(cmdline)
    except ValueError:
        words = cmdline.split()
    for flag in ("--served-model-name", "--model"):
        for i, word in enumerate(words):
            if word == flag and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(flag + "="):
                return word.split("=", 1)[1]
    if "serve" in words and words.index("serve") + 1 < len(words):
        nxt = words[words.index("serve") + 1]
        return None if nxt.startswith("-") else nxt
    return None


def holder_name(pid: int, cmdline: str) -> str:
    """A GPU process named by the model it serves: its own command line, else its parents' (vLLM's
    engine core runs as `VLLM::EngineCore`, a child of the API server that names the model)."""
    import psutil

    lines = [cmdline]
    with contextlib.suppress(psutil.Error):
        lines += [" ".join(p.cmdline()) for p in psutil.Process(pid).parents()]
    for line in lines:
        if model := served_model(line):
            return model
    return cmdline.split(" ", 1)[0].rsplit("/", 1)[-1] or f"pid {pid}"
