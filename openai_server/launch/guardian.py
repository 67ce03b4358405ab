"""Kills a server's process group when the launcher dies without stopping it (even by SIGKILL).

Both sides of one protocol, over the guardian's stdin:
- the launcher (`Guardian`) starts this small process in its own session before the server, then
  writes `PGID <n>`; when it stops the server itself it writes `DONE`;
- the guardian (`main`, run as `python -m openai_server.launch.guardian GRACE`) reads lines until
  EOF. EOF without `DONE` means the launcher is gone (the kernel closed the pipe): the group gets
  SIGTERM, a grace period, then SIGKILL.
Without this, a SIGKILLed launcher leaves the vLLM API server, its `VLLM::EngineCore` and workers
holding the GPU (vllm issue 55510).

Imports only the standard library (and `openai_server/__init__.py` and `launch/__init__.py` import
nothing): the guardian must start in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

MODULE = "openai_server.launch.guardian"


class Guardian:
    """The launcher's handle on its guardian process."""

    def __init__(self, grace: float) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", MODULE, str(grace)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )

    def _say(self, line: str) -> None:
        stdin = self._proc.stdin
        if stdin is not None and not stdin.closed:
            stdin.write(line + "\n")
            stdin.flush()

    def watch(self, pgid: int) -> None:
        self._say(f"PGID {pgid}")

    def release(self) -> None:
        self._say("DONE")

    def close(self) -> None:
        """Release and let the guardian exit (it kills nothing after DONE)."""
        self.release()
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()


# ---- the guardian process


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
