"""Kills a server's process group when the launcher dies without stopping it (even by SIGKILL).

The launcher starts this small process in its own session before the server, then writes
`PGID <n>` to its stdin. When the launcher stops the server itself it writes `DONE`. If stdin
reaches EOF without `DONE`, the launcher is gone (the kernel closed the pipe): the group gets
SIGTERM, a grace period, then SIGKILL. Without this, a SIGKILLed launcher leaves the vLLM API
server, its `VLLM::EngineCore` and workers holding the GPU (vllm issue 55510).

Imports only the standard library: it must start in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, wait up to `grace` seconds for it to go, then SIGKILL what is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def main() -> None:
    grace = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    # A terminal's Ctrl-C goes to the launcher, which stops the server and says DONE; the
    # guardian must not die of it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pgid: int | None = None
    for line in sys.stdin:
        word, _, arg = line.strip().partition(" ")
        if word == "PGID":
            # never a system group or our own: killpg(1, ...) would hit every process we may signal
            candidate = int(arg)
            pgid = candidate if candidate > 1 and candidate != os.getpgrp() else None
        elif word == "DONE":
            pgid = None
    if pgid is not None:
        kill_group(pgid, grace)


if __name__ == "__main__":
    main()
