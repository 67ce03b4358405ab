"""`serve launch --node-rank` before any vLLM starts: the options checked against the profile, the
join's failures (no head, a missing node, a node with another profile), each one line with its
exit code, as real launcher processes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from openai_server.errors import ExitCode
from openai_server.preflight.node import NodeFacts
from openai_server.preflight.node import lines as node_lines
from tests.conftest import ROOT, SERVE, free_port, spawn

PROFILE = str(ROOT / "examples" / "profiles" / "tiny-cpu-2nodes.yaml")


def serve_launch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVE, "launch", "--no-check", "--log-format", "plain", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-p", PROFILE], "run `serve launch --node-rank R --head-address HOST` on each of the 2"),
        (["-p", PROFILE, "--node-rank", "2", "--head-address", "h"], "the profile has 2 nodes"),
        (["-p", PROFILE, "--node-rank", "1"], "--head-address: node 0's address is needed"),
        (["-p", "tiny-cpu", "--node-rank", "0"], "the profile runs on one node (nodes: 1)"),
    ],
)
def test_options_that_contradict_the_profile_are_refused(args: list[str], says: str) -> None:
    out = serve_launch(*args)
    assert out.returncode == ExitCode.REFUSED, out.stdout + out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("serve: error: launch: ") and says in line, line


def test_a_worker_without_its_head_exits_after_the_join_timeout() -> None:
    port = free_port()
    t0 = time.monotonic()
    out = serve_launch("-p", PROFILE, "--node-rank", "1", "--head-address", "127.0.0.1",
                       "--control-port", str(port), "--join-timeout", "2")  # fmt: skip
    assert out.returncode == ExitCode.HEAD_LOST, out.stdout + out.stderr
    [line] = out.stderr.strip().splitlines()
    assert f"the head 127.0.0.1:{port} did not answer before the join timeout" in line, line
    assert time.monotonic() - t0 < 30


def test_a_node_that_never_joins_ends_the_head_before_any_server(tmp_path: Path) -> None:
    control = free_port()
    head = spawn(tmp_path, "--no-check", "--node-rank", "0", "--head-address", "127.0.0.1",
                 "--control-port", str(control), "--join-timeout", "3", profile=PROFILE)  # fmt: skip
    assert head.finish(60) == ExitCode.JOIN_TIMEOUT, head.output()
    [line] = head.error_lines()
    assert "node(s) 1 did not join within 3 s" in line, line
    assert "nodes: 1 of 2 joined" in head.output()
    assert "started the server" not in head.output()


def test_a_node_with_another_profile_is_refused_by_the_head(tmp_path: Path) -> None:
    control = free_port()
    common = ["--head-address", "127.0.0.1", "--control-port", str(control)]
    head = spawn(tmp_path, "--no-check", "--node-rank", "0", *common, "--join-timeout", "20",
                 profile=PROFILE)  # fmt: skip
    head.wait_for("nodes: 1 of 2 joined", 30)
    out = serve_launch("-p", PROFILE, "--set", "max_num_seqs=4", "--node-rank", "1", *common)
    assert out.returncode == ExitCode.REFUSED, out.stdout + out.stderr
    [line] = out.stderr.strip().splitlines()
    assert "the head refused this node: this node's profile differs from the head's" in line
    assert "nodes: 2 of 2 joined" not in head.output()
    head.proc.send_signal(signal.SIGTERM)  # still waiting for node 1: a clean stop
    assert head.finish(30) == ExitCode.TERMINATED, head.output()


def test_a_taken_port_refuses_the_head_in_one_line() -> None:
    import socket

    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        out = subprocess.run(
            [*SERVE, "launch", "-p", PROFILE, "--node-rank", "0", "--head-address", "127.0.0.1",
             "--control-port", str(port)], capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
    assert out.returncode == ExitCode.REFUSED, out.stdout + out.stderr
    [line] = [ln for ln in out.stderr.splitlines() if ln.startswith("serve: error:")]
    assert f"check: node 0: the head's control port {port} is in use on this node" in line


GIB = 1024**3


def facts(shm: int | None, gpus_per_node: int = 8, uses_gpus: bool = True) -> NodeFacts:
    return NodeFacts(rank=1, gpus_per_node=gpus_per_node, ports={}, busy=frozenset(),
                     shm_bytes=shm, uses_gpus=uses_gpus)  # fmt: skip


@pytest.mark.parametrize(
    ("node_facts", "status"),
    [
        (facts(64 * 1024**2), "refused"),  # Docker's default
        (facts(8 * GIB), "warning"),
        (facts(64 * GIB), "ok"),
        (facts(64 * 1024**2, gpus_per_node=1), None),  # one GPU a node: no NCCL between GPUs
        (facts(64 * 1024**2, uses_gpus=False), None),  # CPU: Gloo, not NCCL
        (facts(None), None),
    ],
)
def test_shared_memory_for_nccl(node_facts: NodeFacts, status: str | None) -> None:
    found = [s for name, s, _r, _f in node_lines(node_facts) if name == "shared memory"]
    assert found == ([status] if status else [])
