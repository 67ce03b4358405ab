"""The GPUs a profile will run on: this host's (NVML) or a named one from a built-in catalog.

Memory is what vLLM sees: torch's total (cudaMemGetInfo), which is a little less than the total
NVML and nvidia-smi report (the driver keeps some). vLLM's gpu_memory_utilization is a fraction of
*that* total (docs/vllm-facts.md). Catalog totals are torch's figures as printed in CUDA
out-of-memory messages ("GPU 0 has a total capacity of 14.75 GiB") and vLLM logs; the H100's
79.18 GiB was seen here.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ProfileError

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None
    cmdline: str  # "" when the process is not visible from here (another container)

    @property
    def looks_like_vllm(self) -> bool:
        return bool(re.search(r"VLLM|vllm|EngineCore|api_server", self.cmdline))


@dataclass(frozen=True)
class Gpu:
    name: str
    total_bytes: int  # as vLLM sees it (torch's total)
    compute_capability: tuple[int, int]
    free_bytes: int | None = None  # None: planned GPU (no live data)
    processes: tuple[GpuProcess, ...] = field(default=())


@dataclass(frozen=True)
class Hardware:
    gpus: tuple[Gpu, ...]
    source: str  # "NVML" / "--gpu T4:2" / "none"

    @property
    def count(self) -> int:
        return len(self.gpus)

    @property
    def planned(self) -> bool:
        return self.source.startswith("--gpu")


@dataclass(frozen=True)
class CatalogEntry:
    names: tuple[str, ...]  # first is the display name; all are accepted by --gpu
    total_gib: float
    cc: tuple[int, int]


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(("Tesla T4", "T4"), 14.75, (7, 5)),
    CatalogEntry(("Tesla V100 16GB", "V100", "V100-16"), 15.77, (7, 0)),
    CatalogEntry(("Tesla V100 32GB", "V100-32"), 31.74, (7, 0)),
    CatalogEntry(("NVIDIA L4", "L4"), 22.05, (8, 9)),
    CatalogEntry(("NVIDIA A10G", "A10G"), 22.19, (8, 6)),
    CatalogEntry(("NVIDIA A10", "A10"), 22.07, (8, 6)),
    CatalogEntry(("NVIDIA A100 40GB", "A100-40", "A100-40GB", "A100"), 39.39, (8, 0)),
    CatalogEntry(("NVIDIA A100 80GB", "A100-80", "A100-80GB"), 79.15, (8, 0)),
    CatalogEntry(("NVIDIA L40S", "L40S"), 44.52, (8, 9)),
    CatalogEntry(("NVIDIA L40", "L40"), 44.52, (8, 9)),
    CatalogEntry(("NVIDIA RTX A6000", "A6000", "RTX-A6000"), 47.54, (8, 6)),
    CatalogEntry(("NVIDIA GeForce RTX 3090", "RTX3090", "3090", "RTX-3090"), 23.69, (8, 6)),
    CatalogEntry(("NVIDIA GeForce RTX 4090", "RTX4090", "4090", "RTX-4090"), 23.65, (8, 9)),
    CatalogEntry(("NVIDIA H100 80GB", "H100", "H100-80", "H100-80GB"), 79.18, (9, 0)),  # seen here
    CatalogEntry(("NVIDIA H200", "H200", "H200-141"), 139.80, (9, 0)),  # seen here
)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def find(name: str) -> CatalogEntry | None:
    """The catalog entry that NAME (any accepted spelling, case and punctuation ignored) names."""
    return next((e for e in CATALOG if _norm(name) in {_norm(n) for n in e.names}), None)


def short_name(entry: CatalogEntry) -> str:
    """The name `--gpu` is usually written with ("A100-80" for "NVIDIA A100 80GB")."""
    return entry.names[1] if len(entry.names) > 1 else entry.names[0]


def catalog_names() -> list[str]:
    return [short_name(e) for e in CATALOG]


def catalog_gpu(name: str, said: str) -> Gpu:
    """The catalog's GPU that NAME names; ProfileError naming `said` (the option as written) and
    the known names when none does."""
    entry = find(name)
    if entry is None:
        raise ProfileError(f"{said}: unknown GPU; known: {', '.join(catalog_names())}")
    return Gpu(entry.names[0], int(entry.total_gib * GiB), entry.cc)


def planned(spec: str) -> Hardware:
    """`--gpu NAME[:COUNT]` -> the planned hardware (no free-memory data)."""
    name, _, count_text = spec.partition(":")
    try:
        count = int(count_text) if count_text else 1
    except ValueError:
        count = 0
    if count < 1:
        raise ProfileError(f"--gpu {spec}: COUNT must be a positive integer (e.g. --gpu A100-80:2)")
    gpu = catalog_gpu(name, f"--gpu {spec}")
    return Hardware((gpu,) * count, f"--gpu {spec}")


# ---------------------------------------------------------------- NVML (the I/O boundary)


class Nvml(Protocol):
    """The part of pynvml we use; tests pass a fake with this shape."""

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = ...) -> Any: ...
    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes: ...


# torch's total is NVML's total less what the driver reserves. Seen here on an H200: NVML v2
# total 150,754,820,096 - reserved 644,939,776 = torch's total 150,109,880,320 exactly. Without the
# v2 query (old drivers) the reserve is taken as 0.43% (the H200's ratio).
TORCH_VISIBLE_FRACTION = 0.99572


def visible(count: int, environ: Mapping[str, str], uuid_of: Callable[[int], str]) -> list[int]:
    """The NVML indices CUDA_VISIBLE_DEVICES leaves to the server, in its order: indices, or
    GPU-/MIG- UUIDs (a prefix is enough, as for CUDA); CUDA ignores everything from the first
    entry it cannot resolve on (CUDA C Programming Guide, "CUDA Environment Variables"). Unset:
    every GPU. Indices are NVML's (PCI bus) order, which is CUDA's with CUDA_DEVICE_ORDER=PCI_BUS_ID
    (vLLM's own multi-GPU setups assume it too)."""
    spec = environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return list(range(count))
    out: list[int] = []
    for token in (t.strip() for t in spec.split(",")):
        if token.isdigit() and int(token) < count:
            index = int(token)
        elif token.startswith(("GPU-", "MIG-")):
            index = next((i for i in range(count) if uuid_of(i).startswith(token)), -1)
        else:
            index = -1
        if index < 0 or index in out:
            break
        out.append(index)
    return out


def detect(nvml: Nvml | None = None, environ: Mapping[str, str] | None = None) -> Hardware:
    """The GPUs the server will see (NVML's devices, through CUDA_VISIBLE_DEVICES); no NVML
    library, no driver or no GPU -> no GPUs."""
    if nvml is None:
        try:
            import pynvml

            nvml = pynvml
        except ImportError:
            return Hardware((), "none")
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded: a CPU host
        return Hardware((), "none")
    try:
        gpus = []
        count = nvml.nvmlDeviceGetCount()

        def uuid_of(i: int) -> str:
            uuid = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))
            return uuid.decode() if isinstance(uuid, bytes) else str(uuid)

        for i in visible(count, os.environ if environ is None else environ, uuid_of):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            mem, total = _memory(nvml, handle)
            gpus.append(
                Gpu(
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    total_bytes=total,
                    compute_capability=tuple(nvml.nvmlDeviceGetCudaComputeCapability(handle)),
                    free_bytes=min(total, int(mem.free)),
                    processes=_processes(nvml, handle),
                )
            )
        return Hardware(tuple(gpus), "NVML" if gpus else "none")
    except Exception:
        return Hardware((), "none")
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _memory(nvml: Nvml, handle: Any) -> tuple[Any, int]:
    """NVML's memory info and the total as torch (and so vLLM) sees it."""
    try:
        v2 = getattr(nvml, "nvmlMemory_v2", None)
        if v2 is not None:
            mem = nvml.nvmlDeviceGetMemoryInfo(handle, version=v2)
            return mem, int(mem.total) - int(getattr(mem, "reserved", 0))
    except Exception:
        pass  # drivers without the v2 query
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    return mem, int(mem.total * TORCH_VISIBLE_FRACTION)


def _processes(nvml: Nvml, handle: Any) -> tuple[GpuProcess, ...]:
    try:
        procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception:
        return ()
    return tuple(
        GpuProcess(int(p.pid), _bytes(getattr(p, "usedGpuMemory", None)), _cmdline(int(p.pid)))
        for p in procs
    )


def _bytes(value: Any) -> int | None:
    # NVML reports "not available" (inside containers) as None or a huge sentinel
    return int(value) if isinstance(value, int) and 0 <= value < 2**62 else None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
