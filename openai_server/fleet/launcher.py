"""One model's `serve launch` under the fleet: a new process at each load, its output prefixed with
the model's name, a guardian of the fleet's per start (nothing outlives a fleet that is killed),
and its stop verified by the supervisor's own stop (launch/supervisor.py)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..command import Command
from ..launch.guardian import Guardian
from ..launch.process import ServerProcess
from ..launch.supervisor import stop_group
from .spec import Member

SLEEP_SETS = ("enable_sleep_mode=true", "env.VLLM_SERVER_DEV_MODE=1")
LAUNCHER_GRACE_S = 60.0  # a launcher's own stop (vLLM's drain, then its group) fits in this


def say(line: str) -> None:
    print(f"serve: fleet: {line}", file=sys.stderr, flush=True)


class Launcher:
    """One model's `serve launch` (a new process at each load), its output prefixed with the
    model's name; a guardian of the fleet's per start."""

    def __init__(self, member: Member, ready: Path, check: bool, sleeps: bool = False) -> None:
        self.member = member
        self.ready = ready
        # vLLM serves /sleep and /wake_up only in its dev mode; the engine listens on loopback
        sets = [*member.sets, *(SLEEP_SETS if sleeps else ())]
        self.argv = [sys.executable, "-m", "openai_server", "launch", "--profile",
                     member.profile_ref, *(a for s in sets for a in ("--set", s)),
                     "--ready-file", str(ready), "--log-format", "plain",
                     *([] if check else ["--no-check"])]  # fmt: skip
        self.proc: ServerProcess | None = None
        self.guardian: Guardian | None = None
        self.started_at = 0.0

    def _line(self, line: str) -> None:
        print(f"[{self.member.name}] {line}", file=sys.stderr, flush=True)

    def start(self) -> None:
        self.ready.unlink(missing_ok=True)
        self.proc = ServerProcess(Command(self.argv), os.environ, [self._line])
        self.guardian = Guardian(LAUNCHER_GRACE_S)
        self.started_at = time.monotonic()
        self.proc.start()
        self.guardian.watch(self.proc.pid)

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def error_line(self) -> str:
        assert self.proc is not None
        self.proc.drain_output()
        errors = [ln for ln in self.proc.tail if ln.startswith("serve: error: ")]
        return errors[-1].removeprefix("serve: error: ") if errors else "its launcher exited"

    def stop(self) -> str | None:
        """Stop and verify (idempotent); the problem, None when nothing is left."""
        if self.proc is None or self.guardian is None:
            return None
        _took, _left, problem = stop_group(self.proc, LAUNCHER_GRACE_S)  # the launcher's stop
        self.guardian.close()
        self.ready.unlink(missing_ok=True)
        return f"{self.member.name}: {problem}" if problem else None
