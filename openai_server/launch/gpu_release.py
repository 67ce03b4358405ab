"""Wait until stopped processes no longer hold GPU memory (NVML), before a restart.

A restart that comes before the old engine's memory is back fails with "Free memory on device ...
is less than desired GPU memory utilization" (vllm 20305): the group being gone is not enough, the
driver frees memory a moment later. Without NVML (CPU hosts, no driver) nothing is waited for.
"""

from __future__ import annotations

import time

from ..preflight import gpus


def holders() -> set[int]:
    """PIDs holding memory on any GPU of this host (empty without NVML)."""
    return {p.pid for gpu in gpus.detect().gpus for p in gpu.processes}


def wait_released(pids: list[int], timeout: float) -> bool:
    """True when none of `pids` holds GPU memory (or there is no NVML), False after `timeout`."""
    deadline = time.monotonic() + timeout
    while pids and holders() & set(pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
