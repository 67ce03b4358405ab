"""The server process: its own process group, its output, and a stop that leaves nothing behind.

Knows nothing of profiles or YAML: it receives a rendered `Command`.

The stop sequence, and why each step is there:
1. SIGTERM to the whole group, not just the API server: vLLM's API server shuts its engine down on
   SIGTERM, but a stuck one would not, and `VLLM::EngineCore` / workers then keep the GPU
   (vllm 55510).
2. Wait up to the grace period for every member of the group to exit (vLLM 0.26 on an H100 took
   0.8 s; newer releases drain in-flight requests for --shutdown-timeout seconds).
3. SIGKILL the group: whatever ignored SIGTERM is ended.
4. Reap the API server so no zombie is left, and check the group is empty.
The guardian process (guardian.py) does 1-3 if the launcher itself is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO

import psutil

from ..command import Command
from ..errors import StartFailed

LineSink = Callable[[str], None]
# uvicorn access-log lines of the launcher's own readiness/liveness probes
_PROBE_ACCESS = re.compile(r'"GET /(health|v1/models) HTTP/[\d.]+" \d+')
TAIL_LINES = 200


def group_members(pgid: int) -> list[int]:
    """PIDs whose process group is `pgid` (zombies excluded: they hold no memory)."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


class ServerProcess:
    """One run of the server: started in a new session, output pumped into a tail buffer."""

    def __init__(self, command: Command, environ: Mapping[str, str], sinks: list[LineSink]) -> None:
        self.command = command
        self._environ = dict(environ)
        self._sinks = sinks
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.last_output = time.monotonic()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self.stopped = False

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def start(self, spawned: Callable[[int], None] | None = None) -> None:
        """Spawn the command; `spawned(pid)` runs before the first line of its output reaches a
        sink, so whatever it announces comes before what the output makes of it."""
        # start_new_session: the server leads its own process group (pgid == pid), so one killpg
        # reaches the engine core and workers, and a terminal's Ctrl-C reaches only the launcher,
        # which then stops the group in order.
        try:
            self._proc = subprocess.Popen(
                self.command.argv,
                env=self._environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            raise StartFailed(f"cannot start {self.command.argv[0]!r}: {e.strerror}") from None
        if spawned is not None:
            spawned(self._proc.pid)
        self._pump = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._pump.start()

    def _read(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self.last_output = time.monotonic()
            self.tail.append(line)
            for sink in self._sinks:
                sink(line)
        stream.close()

    def poll(self) -> int | None:
        assert self._proc is not None
        return self._proc.poll()

    def drain_output(self, timeout: float = 2.0) -> None:
        """Wait for the output pump to read what the dead process wrote last (its error)."""
        if self._pump is not None:
            self._pump.join(timeout)

    def last_lines(self, n: int = 30) -> list[str]:
        """The server's last lines, without the access-log noise of our own probes."""
        return [line for line in self.tail if not _PROBE_ACCESS.search(line)][-n:]

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def members(self) -> list[int]:
        """Live members of the server's group (after `stop`, this must be empty)."""
        return group_members(self.pid) if self._proc is not None else []

    def stop(self, grace: float) -> int | None:
        """Stop the whole group (see the module docstring); return the API server's exit code."""
        self.stopped = True
        if self._proc is None:
            return None
        self.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self._proc.poll()  # reap the leader so it does not count as alive
            if not group_members(self.pid):
                break
            time.sleep(0.05)
        if group_members(self.pid):
            self.signal_group(signal.SIGKILL)
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            code = None
        # SIGKILLed members disappear asynchronously; give the kernel a moment, then check.
        for _ in range(100):
            if not group_members(self.pid):
                break
            time.sleep(0.05)
        self.drain_output(1.0)
        return code
