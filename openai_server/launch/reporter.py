"""What the launcher tells a person or a log pipeline: events, as lines, JSON, or a live display.

- `plain`: one line per event on stdout (no terminal: Docker logs, CI, systemd).
- `json`: one JSON object per event on stdout, for log pipelines (fields: event, t, elapsed, ...).
- `rich`: on a terminal, a live status line with the current phase and its elapsed time, and a
  line per finished phase.
The server's raw output goes to stderr only with --verbose, and to --log-file always; on a failure
the relevant lines are shown whatever the mode.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Literal, TextIO

Mode = Literal["plain", "json", "rich"]


class Reporter:
    def __init__(
        self,
        mode: Mode,
        *,
        verbose: bool = False,
        log_file: TextIO | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.mode = mode
        self.verbose = verbose
        self.log_file = log_file
        self.out = out or sys.stdout
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._status: Any = None
        if mode == "rich":
            from rich.console import Console

            self._console = Console(file=self.out, stderr=False)
            self._status = self._console.status("starting", spinner="dots")
            self._status.start()

    @staticmethod
    def mode_for(log_format: Literal["auto", "plain", "json"], *, verbose: bool, tty: bool) -> Mode:
        """--log-format auto: the live display only on a terminal, and not under the raw output
        of --verbose (the two would interleave)."""
        if log_format != "auto":
            return log_format
        return "rich" if tty and not verbose else "plain"

    # ---- the server's own output (called from the output pump thread)
    def raw(self, line: str) -> None:
        if self.log_file is not None:
            self.log_file.write(line + "\n")
            self.log_file.flush()
        if self.verbose:
            with self._lock:
                print(line, file=sys.stderr, flush=True)

    # ---- launcher events
    def event(self, event: str, message: str, **fields: Any) -> None:
        elapsed = round(time.monotonic() - self.started, 2)
        with self._lock:
            if self.mode == "json":
                record = {"event": event, "t": round(time.time(), 3), "elapsed": elapsed}
                record.update({k: v for k, v in fields.items() if v is not None})
                record["message"] = message
                print(json.dumps(record, default=str), file=self.out, flush=True)
            elif self.mode == "rich":
                self._console.print(f"[dim]{elapsed:7.1f}s[/dim] {message}", highlight=False)
            else:
                print(f"serve: {message}", file=self.out, flush=True)

    def status(self, text: str) -> None:
        """The live line on a terminal (current phase and its elapsed time); a no-op elsewhere."""
        if self._status is not None:
            self._status.update(text)

    @property
    def live(self) -> bool:
        """Whether the live status line is up (rich mode, until close())."""
        return self._status is not None

    def detail(self, title: str, lines: list[str]) -> None:
        """Lines that explain a failure (always shown: on stderr, or as a JSON event)."""
        if not lines:
            return
        with self._lock:
            if self.mode == "json":
                record = {"event": "log", "title": title, "lines": lines}
                print(json.dumps(record), file=self.out, flush=True)
                return
            print(f"--- {title} ---", file=sys.stderr)
            for line in lines:
                print(f"  {line}", file=sys.stderr)
            sys.stderr.flush()

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
