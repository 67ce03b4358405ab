"""The fault fake (tests/faults/fakeserver.py) does what each switch promises, as a real process.

The fault suite trusts these switches to stand for the real vLLM's behaviour; if a switch stopped
working, a fault test would pass for the wrong reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port

FAKE_PYTHON = Path(__file__).resolve().parent / "fake-python"
LOGS = Path(__file__).resolve().parent / "logs"


class Fake:
    def __init__(self, tmp: Path, switches: str, *argv: str) -> None:
        self.port = free_port()
        self.out = tmp / f"fake-{self.port}.out"
        env = {**os.environ, "FAKE_VLLM": switches}
        cmd = [str(FAKE_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", "m",
               "--served-model-name", "fake", "--port", str(self.port), "--max-num-seqs", "4",
               *argv]  # fmt: skip
        self.t0 = time.monotonic()
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.out.read_text()

    def bound(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def wait_bound(self, timeout: float = 10) -> float:
        while time.monotonic() - self.t0 < timeout:
            if self.bound():
                return time.monotonic() - self.t0
            assert self.proc.poll() is None, self.output()
            time.sleep(0.02)
        raise AssertionError(f"not bound after {timeout} s:\n{self.output()}")

    def group(self) -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) == self.proc.pid:
                    out.append(p)
            except (ProcessLookupError, psutil.Error):
                pass
        return out

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[list[Fake]]:
    started: list[Fake] = []
    yield started
    for f in started:
        f.kill_group()


Starter = Callable[..., Fake]


@pytest.fixture
def start(tmp_path: Path, fakes: list[Fake]) -> Starter:
    def _start(switches: str = "", *argv: str) -> Fake:
        f = Fake(tmp_path, switches, *argv)
        fakes.append(f)
        return f

    return _start


def test_answers_like_vllm_with_the_served_model_name(start: Starter) -> None:
    f = start()
    took = f.wait_bound()
    assert took < 5  # < 0.3 s on an idle machine; the bound allows for 4 other vLLM builds
    models = httpx.get(f"{f.url}/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["fake"]
    assert httpx.get(f"{f.url}/health").status_code == 200
    assert httpx.get(f"{f.url}/version").json()["version"]
    chat = httpx.post(f"{f.url}/v1/chat/completions", json={
        "model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
    }).json()  # fmt: skip
    assert chat["choices"][0]["message"]["content"] == "Hello from the"
    assert chat["usage"]["completion_tokens"] == 3
    with httpx.stream("POST", f"{f.url}/v1/completions", json={
        "model": "fake", "prompt": "hi", "max_tokens": 2, "stream": True,
    }) as r:  # fmt: skip
        events = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) == 3
    assert (
        httpx.post(f"{f.url}/v1/completions", json={"model": "other", "prompt": "x"}).status_code
        == 404
    )
    out = f.output()
    assert f"Starting vLLM server on http://127.0.0.1:{f.port}" in out
    assert "Application startup complete." in out


def test_ready_after_refuses_connections_until_then(start: Starter) -> None:
    f = start("--ready-after 1.5")
    time.sleep(0.5)
    assert not f.bound()
    assert f.wait_bound() >= 1.5


def test_exit_before_ready_exits_with_the_code_and_never_binds(start: Starter) -> None:
    f = start("--ready-after 30 --exit-before-ready 3")
    assert f.proc.wait(10) == 3
    assert "Initializing a V1 LLM engine" in f.output()


def test_print_replays_a_captured_log_without_its_comments(start: Starter) -> None:
    log = LOGS / "cpu-0.32-kv-cache-too-small.log"
    f = start(f"--print {log} --exit-before-ready 1")
    assert f.proc.wait(10) == 1
    out = f.output()
    assert "larger than the available KV cache memory" in out
    assert "# CAPTURED" not in out


def test_exit_after_ready_exits_with_the_code_after_serving(start: Starter) -> None:
    f = start("--exit-after-ready 2:0")
    f.wait_bound()
    assert httpx.get(f"{f.url}/v1/models").status_code == 200
    assert f.proc.wait(10) == 0


def test_exit_after_ready_can_die_like_a_killed_engine(start: Starter) -> None:
    # the engine goes first, then the API server prints what vLLM 0.32 printed and exits 0
    log = LOGS / "cpu-0.32-engine-killed.log"
    f = start(f"--spawn-engine --exit-after-ready 1:0 --print-at-exit {log}")
    f.wait_bound()
    engine = next(p for p in f.group() if p.name().startswith("VLLM::EngineCor"))
    assert f.proc.wait(10) == 0
    assert "engine core exited unexpectedly" in f.output()
    engine.wait(5)  # reaped by nobody but gone: SIGKILLed before the server exited


def test_hang_after_ready_answers_health_but_never_completions(start: Starter) -> None:
    f = start("--hang-after-ready 0.3")
    f.wait_bound()
    time.sleep(0.4)
    assert httpx.get(f"{f.url}/health").status_code == 200
    assert httpx.get(f"{f.url}/v1/models").status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{f.url}/v1/completions", json={"prompt": "x"}, timeout=1.0)
    assert f.proc.poll() is None


def test_health_503_after(start: Starter) -> None:
    f = start("--health-503-after 3")  # seconds: a loaded machine may stall between two lines
    f.wait_bound()
    assert httpx.get(f"{f.url}/health").status_code == 200
    deadline = time.monotonic() + 30
    while httpx.get(f"{f.url}/health").status_code != 503:
        assert time.monotonic() < deadline, "/health never turned 503"
        time.sleep(0.2)
    assert httpx.get(f"{f.url}/v1/models").status_code == 200


def test_sigterm_stops_it_unless_ignored(start: Starter) -> None:
    polite, stubborn = start(), start("--ignore-sigterm")
    polite.wait_bound(), stubborn.wait_bound()
    polite.proc.send_signal(signal.SIGTERM)
    stubborn.proc.send_signal(signal.SIGTERM)
    assert polite.proc.wait(5) == 0
    time.sleep(0.5)
    assert stubborn.proc.poll() is None


def test_spawned_engine_is_named_like_vllms_and_can_ignore_sigterm(start: Starter) -> None:
    f = start("--spawn-engine --engine-ignores-sigterm")
    f.wait_bound()
    deadline = time.monotonic() + 10  # the engine renames itself after its start: poll for it
    while not (engines := [p for p in f.group() if p.name().startswith("VLLM::EngineCor")]):
        assert time.monotonic() < deadline, [p.name() for p in f.group()]
        time.sleep(0.05)
    assert len(engines) == 1 and engines[0].pid != f.proc.pid
    f.proc.send_signal(signal.SIGTERM)
    assert f.proc.wait(5) == 0
    time.sleep(0.3)
    assert engines[0].is_running() and engines[0].status() != psutil.STATUS_ZOMBIE


def test_silent_busy_burns_cpu_without_output_then_binds(start: Starter) -> None:
    f = start("--silent-busy 1.5")  # CPU seconds: it cannot bind before it has burnt them
    proc = psutil.Process(f.proc.pid)
    deadline = time.monotonic() + 30
    while proc.cpu_times().user + proc.cpu_times().system < 0.5:
        assert time.monotonic() < deadline, "the fake never burnt half a CPU second"
        time.sleep(0.05)
    assert f.output() == "" and not f.bound()
    f.wait_bound(timeout=60)


def test_silent_idle_never_binds_and_uses_no_cpu(start: Starter) -> None:
    f = start("--silent-idle")
    proc = psutil.Process(f.proc.pid)
    time.sleep(1.0)
    cpu = proc.cpu_times().user + proc.cpu_times().system
    time.sleep(1.0)
    assert f.output() == "" and not f.bound() and f.proc.poll() is None
    assert proc.cpu_times().user + proc.cpu_times().system - cpu < 0.05
