"""The fault suite records each fault's time to detection and prints them at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TIMINGS: list[tuple[str, float, int]] = []
OUT = Path(__file__).resolve().parents[2] / "benchmarks" / "out" / "fault-detection.json"


def record(fault: str, seconds: float, exit_code: int) -> None:
    TIMINGS.append((fault, round(seconds, 2), exit_code))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("fault detection times")
    for fault, seconds, code in TIMINGS:
        terminalreporter.write_line(f"{fault:<48} exit {code:<4} detected in {seconds:6.2f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps([dict(zip(("fault", "seconds", "exit_code"), t, strict=True))
                               for t in TIMINGS], indent=2))  # fmt: skip
