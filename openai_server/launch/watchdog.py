"""Is the server tree making progress? Is its engine still there? Decided from the process tree.

A fixed start timeout either kills slow healthy starts or waits forever on a hung NCCL init
(vllm 8087, 6370; KServe 5062). A healthy cold start on an H100 was silent in its log for 124 s
while compiling kernels, so silence alone is not a hang. A start is hung only when,
for `stall_timeout` seconds, there is no new output line, no phase change, and no CPU time spent
by any process of the server's group.

After ready, vLLM's API server can outlive its engine for a while (and then exits 0, vllm 48966);
watching the `VLLM::*` processes of the group catches an engine death at once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import psutil

from .process import group_members

CPU_ACTIVE_SECONDS = 0.05  # CPU seconds per sample that count as "working" (idle loops use less)
SAMPLE_EVERY = 2.0


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


@dataclass
class ProgressWatch:
    """Tracks the last time the server group showed any sign of progress."""

    pgid: int
    stall_timeout: float
    last_progress: float = field(default_factory=time.monotonic)
    _last_sample: float = 0.0
    _last_cpu: float | None = None

    def progressed(self, now: float | None = None) -> None:
        """Called on every output line and phase change."""
        self.last_progress = max(self.last_progress, now or time.monotonic())

    def sample(self, now: float) -> None:
        if now - self._last_sample < SAMPLE_EVERY:
            return
        self._last_sample = now
        cpu = _cpu_seconds(group_members(self.pgid))
        if self._last_cpu is not None and cpu - self._last_cpu >= CPU_ACTIVE_SECONDS:
            self.progressed(now)
        self._last_cpu = cpu

    def stalled_for(self, now: float, last_output: float) -> float:
        self.progressed(last_output)
        self.sample(now)
        return now - self.last_progress

    def is_hung(self, now: float, last_output: float) -> bool:
        return self.stall_timeout > 0 and self.stalled_for(now, last_output) > self.stall_timeout


@dataclass
class EngineWatch:
    """Remembers the group's `VLLM::*` engine processes at ready; reports the first one gone."""

    pgid: int
    engines: dict[int, str] = field(default_factory=dict)
    _last_check: float = 0.0

    def snapshot(self) -> None:
        for pid in group_members(self.pgid):
            if pid == self.pgid:
                continue
            try:
                proc = psutil.Process(pid)
                # the kernel truncates name() to 15 characters ("VLLM::EngineCor"); the title
                # vLLM sets with setproctitle is whole in the command line
                cmdline = proc.cmdline()
                name = cmdline[0] if cmdline else proc.name()
            except psutil.Error:
                continue
            if name.startswith("VLLM::"):
                self.engines[pid] = name.strip()

    def dead_engine(self, now: float, every: float = 1.0) -> str | None:
        if now - self._last_check < every:
            return None
        self._last_check = now
        for pid, name in self.engines.items():
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE and os.getpgid(pid) == self.pgid:
                    continue
            except (psutil.Error, ProcessLookupError):
                pass
            return f"{name} (pid {pid})"
        return None
