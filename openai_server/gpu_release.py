"""Wait until stopped processes no longer hold GPU memory (NVML), before a restart.

A restart that comes before the old engine's memory is back fails with "Free memory on device ...
is less than desired GPU memory utilization" (vllm 20305): the group being gone is not enough, the
driver frees memory a moment later. Without NVML (CPU hosts, no driver) nothing is waited for.
"""

from __future__ import annotations

import time
from typing import Any


def _holders(nvml: Any) -> set[int]:
    pids: set[int] = set()
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            pids.add(int(proc.pid))
    return pids


def wait_released(pids: list[int], timeout: float) -> bool:
    """True when none of `pids` holds GPU memory (or there is no NVML), False after `timeout`."""
    if not pids:
        return True
    try:
        import pynvml as nvml

        nvml.nvmlInit()
    except Exception:  # no library, no driver, no GPU: nothing holds GPU memory
        return True
    try:
        deadline = time.monotonic() + timeout
        while _holders(nvml) & set(pids):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True
    except Exception:
        return True
    finally:
        nvml.nvmlShutdown()
