"""A command run in a real terminal (tmux), its screen captured: what an operator would see."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.conftest import ROOT


@dataclass
class Terminal:
    socket: str

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True)
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def wait_for(self, *texts: str, timeout: float = 120) -> str:
        """The screen once it shows all of `texts` (fails with the last screen after timeout)."""
        deadline = time.monotonic() + timeout
        shown = self.screen()
        while not all(t in shown for t in texts):
            if time.monotonic() > deadline:
                raise AssertionError(f"{texts} not on the screen after {timeout} s:\n{shown}")
            time.sleep(0.3)
            shown = self.screen()
        return shown


@contextmanager
def terminal(argv: list[str], width: int, height: int) -> Iterator[Terminal]:
    """`argv` run in a detached tmux session of width x height (the screen stays after an exit)."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed: apt-get install tmux")
    term = Terminal(f"serve-top-{time.monotonic_ns()}")
    command = f"cd {shlex.quote(str(ROOT))} && {shlex.join(argv)}; sleep 600"
    term.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), command)
    try:
        yield term
    finally:
        term.tmux("kill-server")
