"""A two-node group whose parts are the fake server (tests/faults/fakeserver.py), each launcher with
its own switches: the worker's part runs under the same run loop as a server (supervisor.run with a
Follower), so its failure is diagnosed with a fix like one server's, and a stop asked of the worker
is told to the head before its part is stopped. Real launchers, real processes, one host."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from openai_server.errors import ExitCode
from tests.conftest import Spawned, assert_nothing_left, free_port, spawn

FAKE2 = "tests/faults/fake-2nodes.yaml"
NCCL_LOG = "tests/faults/logs/gpu-0.26-nccl-shm.log"


@dataclass
class Pair:
    head: Spawned
    worker: Spawned

    def finish(self, head: int, worker: int) -> tuple[str, str]:
        """Both launchers' exit codes as expected; their one error line each; nothing left."""
        got = (self.head.finish(90), self.worker.finish(90))
        both = self.head.output()[-2500:] + "\n----\n" + self.worker.output()[-2500:]
        assert got == (head, worker), both
        lines = []
        for s in (self.head, self.worker):
            errors = s.error_lines() or [
                ln for ln in s.output().splitlines() if ln.startswith("serve: stopped by")
            ]
            assert len(errors) == 1, both
            lines.append(errors[0])
            assert_nothing_left(s.output(), None)
        assert_nothing_left("", self.head.port)
        return lines[0], lines[1]


def start(tmp: Path, head: str, worker: str) -> Pair:
    port, control = free_port(), free_port()
    common = ("--no-check", "--head-address", "127.0.0.1", "--control-port", str(control),
              "--join-timeout", "60")  # fmt: skip
    parts = []
    for rank, switches in enumerate((head, worker)):
        (tmp / str(rank)).mkdir()
        parts.append(spawn(tmp / str(rank), "--node-rank", str(rank), *common, profile=FAKE2,
                           port=port, env={"FAKE_VLLM": switches}))  # fmt: skip
    return Pair(*parts)


def test_a_workers_failure_is_diagnosed_with_its_fix_on_both_nodes(tmp_path: Path) -> None:
    # node 1's rank fails like a tensor-parallel rank in Docker without --ipc=host (real log)
    pair = start(tmp_path, "--ready-after 60", f"--print {NCCL_LOG} --exit-before-ready 1")
    head, worker = pair.finish(ExitCode.NODE_LOST, ExitCode.NCCL_SHM)
    for line in (head, worker):
        assert "NCCL could not create its shared-memory segment" in line, line
        assert "fix: run the container with --ipc=host" in line, line
        assert "its vLLM rank exited with code 1 before it was ready" in line, line
    assert head.startswith("serve: error: ") and "node 1 (" in head, head


def test_a_stop_asked_of_a_worker_is_told_to_the_head(tmp_path: Path) -> None:
    # node 1's rank: alive, silent, no port (a headless rank serves none)
    pair = start(tmp_path, "--ready-after 1", "--silent-idle")
    pair.head.wait_ready(60)
    pair.worker.wait_for("the group is ready: http://127.0.0.1:", 30)
    pair.worker.proc.send_signal(signal.SIGINT)
    head, worker = pair.finish(ExitCode.NODE_LOST, ExitCode.INTERRUPTED)
    assert "node 1 (" in head and "stopped by SIGINT; stopping the group" in head, head
    assert worker.startswith("serve: stopped by SIGINT"), worker
    assert "its vLLM rank stopped in" in pair.worker.output()
