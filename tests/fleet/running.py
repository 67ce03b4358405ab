"""A real `serve fleet` process for the end-to-end files: started on a fleet file, waited for until
its `chat` model is ready, stopped (its process group) when the module is done."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import SERVE, Launched, free_port


def output(fleet: Launched) -> str:
    return fleet.log.read_text(errors="replace")


def run_fleet(tmp: Path, models: str, ready_s: float, head: str = "") -> Iterator[Launched]:
    """`models`: the fleet file's models block; `head`: its other keys (the port is chosen here)."""
    port = free_port()
    (tmp / "fleet.yaml").write_text(f"port: {port}\n{head}models:\n{models}")
    log = tmp / "fleet.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*SERVE, "fleet", "--file", str(tmp / "fleet.yaml"), "--no-check"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    running = Launched(proc, f"http://127.0.0.1:{port}", port, "chat", log)
    deadline = time.monotonic() + ready_s
    while "serve: fleet: chat: ready" not in output(running):
        assert proc.poll() is None, output(running)[-4000:]
        assert time.monotonic() < deadline, output(running)[-4000:]
        time.sleep(0.5)
    yield running
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(120)
