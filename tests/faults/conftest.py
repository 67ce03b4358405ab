"""The fault suite records each fault's time to detection and prints them at the end."""

from __future__ import annotations

import json
import time

from openai_server.errors import ExitCode
from tests.conftest import FAULT_TIMES, Spawned, assert_nothing_left

# Each record is a line appended to FAULT_TIMES (the tests run in several pytest-xdist workers);
# tests/conftest.py gathers them at the end of the run.


def record(fault: str, seconds: float, exit_code: int) -> None:
    FAULT_TIMES.parent.mkdir(parents=True, exist_ok=True)
    with FAULT_TIMES.open("a") as f:
        f.write(json.dumps({"fault": fault, "seconds": round(seconds, 2), "exit_code": exit_code})
                + "\n")  # fmt: skip


def expect_fault(
    spawned: Spawned, fault: str, code: int, cause: str, *, timeout: float = 60, port: bool = True
) -> str:
    """Wait for the launcher to end; record the time; assert its exit code, its one error line
    (containing `cause`), and that nothing of the server group (nor its port) is left.

    A stop the user asked for (SIGINT, SIGTERM) is no error: it must say `serve: stopped by ...`
    in one line, and print no error line at all."""
    t0 = time.monotonic()
    got = spawned.finish(timeout)
    record(fault, time.monotonic() - t0, got)
    out = spawned.output()
    assert got == code, out[-3000:]
    errors = spawned.error_lines()
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        assert errors == [], out[-3000:]
        errors = [ln for ln in out.splitlines() if ln.startswith("serve: stopped by")]
    assert len(errors) == 1 and cause in errors[0], out[-3000:]
    assert_nothing_left(out, spawned.port if port else None)
    return errors[0]
