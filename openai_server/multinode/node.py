"""One node of a server over several nodes: what `serve launch --node-rank R` does.

The head (rank 0) listens for the other nodes' launchers (group.py), shows the join as a phase
("1 of 2 nodes joined"), starts Ray's head first where the backend is Ray and waits until Ray counts
every node, then runs its server through the supervisor with a stop request that also fires when
a node leaves. A worker joins the head, starts its part when told (a headless vLLM rank, or `ray
start --address`) and runs it through the same run loop (supervisor.run with a Follower: ready
when the head says so; its failures diagnosed, with their fix, as one server's): its part's end is
reported to the head in one line, and the head's departure stops the part and ends the worker
instead of leaving it in a rendezvous.

Restarts are the group's, not one process's: a headless rank cannot rejoin a running head, so the
supervisor's own restarts are off and the head re-forms the whole group per the restart policy
(every worker stops its part and joins again). Whatever ends a node, its processes are stopped by
process group (Ray included: never `ray stop`, which would stop every Ray on the host).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace

from ..command import Command
from ..errors import (
    HeadLost,
    Interrupted,
    JoinTimeout,
    NodeLost,
    RefusedError,
    ServeError,
    StartFailed,
    StopIncomplete,
)
from ..launch.options import LaunchOptions
from ..launch.process import ServerProcess
from ..launch.reporter import Reporter
from ..launch.restart import RestartPolicy, Restarts
from ..launch.supervisor import Follower, StopRequest, run, signals_to, stop_group
from . import group
from .spec import NodeSpec

POLL_S = 0.2
RAY_POLL_S = 2.0
STOP_WAIT_S = 10.0  # after its part exited, how long a worker waits for the head's decision
# `ray start --block` outlived SIGTERM for the whole 30 s grace (Ray 2.60: its raylet exited at
# once, the blocking parent did not); Ray drains no requests, so it gets a short grace
RAY_GRACE_S = 5.0

# vLLM's own address for the other nodes (vllm/envs.py VLLM_HOST_IP; its default, the interface of
# the default route, is the wrong one on hosts with several): a node's launcher knows the right one,
# the local address of its connection to the head (or, on the head, of the workers' connections).
HOST_IP_VAR = "VLLM_HOST_IP"

RAY_NODES_PROGRAM = (
    "import sys, ray\n"
    "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
    "print(sum(1 for n in ray.nodes() if n.get('Alive')))\n"
)


class _Listening(StopRequest):
    """A stop request that also listens to the other nodes: its wait ends early on a signal or on
    what `_take` heard that ends the run (`_heard`)."""

    def _take(self, timeout: float) -> None:
        raise NotImplementedError

    def _heard(self) -> bool:
        raise NotImplementedError

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.event.is_set() and not self._heard():
            left = end - time.monotonic()
            if left <= 0:
                return
            self._take(min(left, POLL_S))


class GroupStop(_Listening):
    """The head's stop request: a signal, or a node that left (the supervisor's loops check it
    between probes, so a lost node ends a start or a ready server within one poll)."""

    def __init__(self, head: group.Head, ui: Reporter) -> None:
        super().__init__()
        self.head = head
        self.ui = ui
        self.lost: group.NodeEvent | None = None

    def _take(self, timeout: float) -> None:
        try:
            ev = self.head.events.get(timeout=timeout)
        except queue.Empty:
            return
        if ev.generation != self.head.generation:
            return  # from before the group was re-formed
        if ev.kind == "joined":
            self.ui.event("node", ev.message, rank=ev.rank)
        elif self.lost is None:
            self.lost = ev

    def _heard(self) -> bool:
        return self.lost is not None

    def check(self) -> None:
        super().check()
        self._take(0)
        if self.lost is not None:
            raise NodeLost(f"{self.lost.message}; stopping the group")


# ---- the head ---------------------------------------------------------------------------------


def run_head(
    spec: NodeSpec,
    opts: LaunchOptions,
    ui: Reporter,
    join_timeout: float,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Rank 0: returns only by raising (Interrupted for a requested stop)."""
    assert spec.server is not None
    try:
        head = group.Head(spec.nodes, spec.digest, spec.control_port)
    except group.GroupError as e:
        raise RefusedError(f"{e}; fix: free the port, or pass another --control-port") from None
    stop = GroupStop(head, ui)
    restarts = Restarts(opts.restart)
    inner = replace(opts, restart=RestartPolicy(mode="never"))
    failed = True
    why = "the head stopped"
    ready = f"{inner.base_url}/v1"
    ready_at: list[float] = []  # when this generation of the group became ready

    def announce() -> None:
        ready_at.append(time.monotonic())
        head.broadcast({"ready": ready})
        if on_ready is not None:
            on_ready()

    with signals_to(stop):
        try:
            while True:
                ready_at.clear()
                ray = _start_ray(spec, inner, ui, stop, join_timeout) if spec.ray else None
                try:
                    _join(head, spec, ui, stop, join_timeout)
                    if ray is not None:
                        head.broadcast({"start": {"ray": spec.ray_address}})
                        _wait_ray_nodes(spec, ray, ui, stop, join_timeout)
                    else:
                        head.broadcast({"start": {}})
                    server = with_host_ip(spec.server, head.local_ip(), ui)
                    run(server, inner, ui, stop=stop, on_ready=announce)
                except StartFailed as failure:
                    now = time.monotonic()
                    # a group that served for a while starts its backoff over, as one node does
                    served = now - ready_at[0] if ready_at else None
                    restart = restarts.after(failure, now, served)
                    if restart is None:
                        why = failure.message
                        raise
                    ui.event(
                        "restart",
                        f"{failure.message}; re-forming the group in {restart.delay:.0f} s "
                        f"(restart {restart.count} of at most {opts.restart.limit})",
                        exit_code=int(failure.exit_code),
                    )
                    head.reform({"stop": failure.message, "rejoin": True})
                    stop.lost = None
                    stop.wait(restart.delay)
                    stop.check()
                finally:
                    _stop_part(ray, ray_grace(inner), ui, "Ray head")
        except Interrupted as e:
            failed, why = False, e.message
            raise
        except ServeError as e:
            why = e.message
            raise
        finally:
            head.close(why, failed=failed)


def _join(
    head: group.Head, spec: NodeSpec, ui: Reporter, stop: GroupStop, join_timeout: float
) -> None:
    """Wait until every node's launcher joined; the count is the phase."""
    deadline = time.monotonic() + join_timeout
    shown = -1
    where = f"port {spec.control_port}"
    while True:
        stop.check()
        joined = head.joined()
        if joined != shown:
            shown = joined
            ui.event("phase", f"nodes: {joined} of {spec.nodes} joined (listening on {where})",
                     phase="join", joined=joined, nodes=spec.nodes)  # fmt: skip
        if joined == spec.nodes:
            return
        if time.monotonic() >= deadline:
            missing = ", ".join(str(r) for r in head.missing())
            raise JoinTimeout(
                f"node(s) {missing} did not join within {join_timeout:.0f} s; fix: run `serve "
                f"launch --node-rank R --head-address {spec.head}` on each, and check that they "
                f"reach this host on {where}"
            )
        stop.wait(POLL_S)


def _start_ray(
    spec: NodeSpec, opts: LaunchOptions, ui: Reporter, stop: StopRequest, timeout: float
) -> ServerProcess:
    assert spec.ray is not None
    proc = _spawn(spec.ray, ui)
    ui.event("phase", f"Ray head starting (pid {proc.pid})", phase="ray")
    deadline = time.monotonic() + timeout
    while _ray_nodes(spec) < 1:
        stop.check()
        if (code := proc.poll()) is not None:
            _stop_part(proc, ray_grace(opts), ui, "Ray head")
            raise StartFailed(f"ray start --head exited with code {code}",
                              detail=proc.last_lines())  # fmt: skip
        if time.monotonic() >= deadline:
            _stop_part(proc, ray_grace(opts), ui, "Ray head")
            raise StartFailed(f"the Ray head did not come up within {timeout:.0f} s",
                              detail=proc.last_lines())  # fmt: skip
        stop.wait(RAY_POLL_S)
    return proc


def _wait_ray_nodes(
    spec: NodeSpec, ray: ServerProcess, ui: Reporter, stop: StopRequest, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    shown = -1
    while (alive := _ray_nodes(spec)) < spec.nodes:
        stop.check()
        if alive != shown:
            shown = alive
            ui.event("phase", f"Ray: {alive} of {spec.nodes} nodes", phase="ray", joined=alive)
        if (code := ray.poll()) is not None:
            raise StartFailed(f"the Ray head exited with code {code}", detail=ray.last_lines())
        if time.monotonic() >= deadline:
            raise JoinTimeout(f"Ray counted {alive} of {spec.nodes} nodes after {timeout:.0f} s")
        stop.wait(RAY_POLL_S)
    ui.event("phase", f"Ray: {spec.nodes} of {spec.nodes} nodes", phase="ray", joined=spec.nodes)


def _ray_nodes(spec: NodeSpec) -> int:
    """Live nodes of our Ray cluster (0 while it is not up). A child process: importing Ray here
    would cost seconds and start threads in the launcher."""
    assert spec.ray_address is not None
    try:
        out = subprocess.run(
            [spec.python, "-c", RAY_NODES_PROGRAM, spec.ray_address],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return 0
    last = out.stdout.strip().splitlines()[-1:] or ["0"]
    return int(last[0]) if out.returncode == 0 and last[0].isdigit() else 0


# ---- a worker ---------------------------------------------------------------------------------


class HeadSaid(Exception):
    """The head stopped the group (`msg["rejoin"]`: to re-form it): not an error, its decision."""

    def __init__(self, msg: dict[str, object]) -> None:
        super().__init__(str(msg.get("stop")))
        self.msg = msg


class MemberStop(_Listening):
    """A worker's stop request: a signal, or the head's word (stop the group, or re-form it),
    which the supervisor's loops then check between probes like a signal. It also keeps what the
    head said of this generation of the group: start, and the URL it serves once ready."""

    def __init__(self, member: group.Member) -> None:
        super().__init__()
        self.member = member
        self.serving = False  # this node's part is running: a signal is told to the head
        self._told = False
        self.new_generation()

    def new_generation(self) -> None:
        self.start = False
        self.ready: str | None = None
        self.said: dict[str, object] | None = None

    def _take(self, timeout: float) -> None:
        msg = self.member.next(timeout)  # HeadLost when the head is gone
        if msg is None:
            return
        if "start" in msg:
            self.start = True
        elif "ready" in msg:
            self.ready = str(msg["ready"])
        elif "stop" in msg and self.said is None:
            self.said = msg

    def _heard(self) -> bool:
        return self.said is not None

    def check(self) -> None:
        if self.signum is not None and self.serving and not self._told:
            self._told = True  # before the part is stopped: the head then names the real cause
            name = signal.Signals(self.signum).name
            self.member.send({"exited": 128 + self.signum, "cause": f"stopped by {name}"})
        super().check()
        if self.said is None:  # the head closes its connection right after its stop: keep that
            self._take(0)
        if self.said is not None:
            raise HeadSaid(self.said)


def run_worker(spec: NodeSpec, opts: LaunchOptions, ui: Reporter, join_timeout: float) -> None:
    """Rank > 0: join, start this node's part when told and supervise it with the same run loop
    as a server (supervisor.run, a Follower); report its end to the head; returns when the head
    stopped the group, raises otherwise."""
    part = spec.server or spec.ray
    assert part is not None
    follower_what = "its Ray node" if spec.server is None else "its vLLM rank"
    member = group.Member(spec.head, spec.control_port, spec.rank, spec.digest)
    stop = MemberStop(member)
    follower = Follower(follower_what, lambda: stop.ready)
    inner = _part_options(spec, opts)
    try:
        with signals_to(stop):
            while True:
                ui.event("phase", f"joining the head at {spec.head}:{spec.control_port} as node "
                         f"{spec.rank} of {spec.nodes}", phase="join")  # fmt: skip
                try:
                    member.join(time.monotonic() + join_timeout, stop.event)
                except HeadLost:
                    StopRequest.check(stop)  # a stop asked for meanwhile is the reason
                    raise
                except group.GroupError as e:
                    raise RefusedError(str(e)) from None
                stop.new_generation()
                ui.event("phase", f"joined; waiting for the other nodes (node {spec.rank} of "
                         f"{spec.nodes})", phase="joined")  # fmt: skip
                try:
                    while not stop.start:
                        stop.check()
                        stop.wait(POLL_S)
                    if not _serve_part(part, follower, inner, ui, member, stop):
                        return
                except HeadSaid as said:
                    if not _stopped_by_head(said.msg, ui):
                        return
    finally:
        member.close()


def _part_options(spec: NodeSpec, opts: LaunchOptions) -> LaunchOptions:
    """A part's run: no restarts of its own (the group's, decided by the head), no ready file, no
    ready timeout or stall watchdog (the head's cover the group's start), Ray's shorter grace."""
    grace = opts.timing.grace if spec.server is not None else ray_grace(opts)
    timing = replace(opts.timing, ready_timeout=float("inf"), stall_timeout=0.0, grace=grace)
    return replace(opts, timing=timing, restart=RestartPolicy(mode="never"), ready_file=None)


def _serve_part(
    part: Command,
    follower: Follower,
    opts: LaunchOptions,
    ui: Reporter,
    member: group.Member,
    stop: MemberStop,
) -> bool:
    """Run this node's part until it or the group ends; True to join again."""
    stop.serving = True
    try:
        run(with_host_ip(part, member.local_ip, ui), opts, ui, stop=stop, follower=follower)
    except HeadLost as e:
        StopRequest.check(stop)  # a stop asked for meanwhile is the reason, not the head
        raise HeadLost(f"{e.message}; stopped {follower.what}") from None
    except StartFailed as failure:
        # the head decides: re-form the group (join again) or stop it (this node fails)
        member.send({"exited": int(failure.exit_code), "cause": failure.message})
        deadline = time.monotonic() + STOP_WAIT_S
        while stop.said is None and time.monotonic() < deadline:
            stop.wait(deadline - time.monotonic())
        if stop.said is not None and stop.said.get("rejoin"):
            return _stopped_by_head(stop.said, ui)
        raise
    finally:
        stop.serving = False
    return False  # pragma: no cover - run() returns only by raising


def _stopped_by_head(msg: dict[str, object], ui: Reporter) -> bool:
    """The head's stop: True to join again (a group restart), False to end; raises when the group
    failed (the worker's exit code then says so)."""
    if msg.get("rejoin"):
        ui.event("restart", f"the head re-forms the group: {msg['stop']}")
        return True
    if msg.get("failed"):
        raise HeadLost(f"the head stopped the group: {msg['stop']}")
    ui.event("stopped", f"the head stopped the group ({msg['stop']})")
    return False


# ---- both ---------------------------------------------------------------------------------------


def with_host_ip(command: Command, ip: str | None, ui: Reporter) -> Command:
    """The command with VLLM_HOST_IP set to `ip`, unless the environment or the profile sets it
    (a LeaderWorkerSet pod gets its own IP from the downward API)."""
    if ip is None or HOST_IP_VAR in os.environ or HOST_IP_VAR in command.env:
        return command
    ui.event("node", f"{HOST_IP_VAR}={ip} (this node's address towards the others)", ip=ip)
    return replace(command, env={**command.env, HOST_IP_VAR: ip})


def _spawn(command: Command, ui: Reporter) -> ServerProcess:
    proc = ServerProcess(command, command.environment(os.environ), [ui.raw])
    proc.start()
    return proc


def ray_grace(opts: LaunchOptions) -> float:
    return min(opts.timing.grace, RAY_GRACE_S)


def _stop_part(proc: ServerProcess | None, grace: float, ui: Reporter, what: str) -> None:
    """Stop a part's process group (idempotent); StopIncomplete when something outlived it."""
    if proc is None or proc.stopped:
        return
    took, _left, problem = stop_group(proc, grace)
    if problem:
        raise StopIncomplete(f"stop incomplete: {what}: {problem}")
    ui.event("stopped", f"{what} stopped in {took:.1f} s; none left")
