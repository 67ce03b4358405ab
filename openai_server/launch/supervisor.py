"""The run loop: start the server, wait for ready while watching it, keep watching, restart or stop.

Every wait loop does, in order: stop requested? -> child alive? -> fatal line logged? -> engine
alive? -> probe -> deadline / stall -> sleep. A dead child ends the wait at once with its exit code,
the diagnosed cause and the relevant lines, and so does a line that says the engine failed while
vLLM's processes stay alive (diagnose.fatal_line); nothing spins. However a run ends, the
server's process group is stopped and checked empty before `run` returns or raises.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

import httpx

from ..command import Command
from ..errors import (
    DiedAfterReady,
    ExitCode,
    Hung,
    Interrupted,
    ReadyTimeout,
    ServeError,
    StartFailed,
    StopIncomplete,
)
from ..probe import ProbeResult
from .diagnose import FatalWatch, diagnose
from .gpu_release import wait_released
from .guardian import Guardian
from .options import LaunchOptions
from .phases import PhaseTracker, strip_ansi
from .process import ServerProcess
from .readiness import check_health, check_models, deep_probe
from .reporter import Reporter
from .restart import Restarts
from .watchdog import EngineWatch, ProgressWatch

POLL_INTERVAL = 0.2  # seconds between readiness probes
STARTUP_GRACE = 5.0  # the SIGTERM -> SIGKILL wait while the server is not ready yet
GPU_RELEASE_TIMEOUT = 30.0  # the driver frees a dead engine's memory a moment after it exits
# After a fatal line, how long its traceback (the root cause, printed just after it, by the same or
# another process) may take to arrive before the group is stopped and the output diagnosed.
FATAL_SETTLE = 1.0


class StopRequest:
    """Set by SIGINT/SIGTERM; the loops check it between probes."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def wait(self, seconds: float) -> None:
        self.event.wait(seconds)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


@contextmanager
def signals_to(stop: StopRequest) -> Iterator[None]:
    previous = {s: signal.signal(s, stop.handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass(frozen=True)
class Follower:
    """A part of a server with no endpoint of its own: a multi-node worker's headless vLLM rank or
    Ray node. It is ready when `ready()` gives the URL the group serves (the head's word); after
    that it is watched for its exit, its fatal lines and its engine processes, not over HTTP (the
    head probes the API). Everything else, the stop, the diagnosis and the restarts, is the same
    code as for a server."""

    what: str  # "its vLLM rank", "its Ray node"
    ready: Callable[[], str | None]


def explain(failure: StartFailed, server: ServerProcess, opts: LaunchOptions) -> StartFailed:
    """Attach the diagnosed cause, fix, exit code and relevant lines to a failure."""
    server.drain_output()
    lines = list(server.tail)
    found = diagnose(lines, profile_keys=opts.profile_keys, port=httpx.URL(opts.base_url).port,
                     model=opts.model or opts.model_id)  # fmt: skip
    if found is None:
        failure.detail = server.last_lines()
        return failure
    failure.message = f"{found.cause}; fix: {found.fix} ({failure.message})"
    failure.exit_code = found.exit_code
    failure.detail = found.lines or server.last_lines()
    return failure


class Run:
    """One start of the server, from spawn to the end of its life."""

    def __init__(
        self,
        command: Command,
        opts: LaunchOptions,
        ui: Reporter,
        env: dict[str, str],
        follower: Follower | None = None,
    ) -> None:
        self.opts = opts
        self.ui = ui
        self.follower = follower
        self.what = follower.what if follower else "the server"
        self.phases = PhaseTracker()
        self.server = ServerProcess(command, env, [self._line])
        self.started = time.monotonic()
        self.progress: ProgressWatch | None = None
        self.ready_at: float | None = None
        # when vLLM logged a line that says its engine failed (diagnose.fatal_line), and the line
        self.fatal: tuple[float, str] | None = None
        self._fatal_watch = FatalWatch()

    def _line(self, line: str) -> None:
        self.ui.raw(line)
        if self.fatal is None and (fatal := self._fatal_watch.feed(line)):
            self.fatal = (time.monotonic(), strip_ansi(fatal).strip())
        for ev in self.phases.feed(line, time.monotonic()):
            if self.progress is not None:
                self.progress.progressed()
            self.ui.event("phase", ev.describe(), phase=ev.phase, **ev.fields())

    def start(self, guardian: Guardian) -> None:
        self.started = time.monotonic()
        self.phases = PhaseTracker(self.started)
        waiting = (
            "waiting for the head's ready"
            if self.follower
            else f"waiting for {self.opts.model_id!r} at {self.opts.base_url}/v1/models"
        )

        def spawned(pid: int) -> None:
            # before the output is read: "started" precedes the phases its lines make (a pump
            # thread that read first put a phase event ahead of it on a loaded machine)
            guardian.watch(pid)
            self.progress = ProgressWatch(pid, self.opts.timing.stall_timeout)
            self.ui.event("started", f"started {self.what} (pid {pid}); {waiting}", pid=pid)

        self.server.start(spawned)

    def reached_ready(self) -> None:
        self.ready_at = time.monotonic()
        ev = self.phases.ready(self.ready_at)
        self.ui.status("ready")
        self.ui.event("phase", ev.describe(), phase=ev.phase, **ev.fields())

    def _child_exited(self, after_ready: bool) -> StartFailed | None:
        code = self.server.poll()
        if code is None:
            return None
        return self._failed(f"{self.what} exited with code {code}", after_ready)

    def _fatal_logged(self, after_ready: bool) -> StartFailed | None:
        """vLLM said its engine failed to start or died, and its processes may never exit (a
        two-GPU start sat 282 s after "EngineCore failed to start."): fail now, not at a timeout."""
        if self.fatal is None or time.monotonic() - self.fatal[0] < FATAL_SETTLE:
            return None
        said = self.fatal[1].rsplit("] ", 1)[-1]
        return self._failed(f"vLLM logged {said!r}", after_ready, ExitCode.ENGINE_DIED)

    def _failed(self, what: str, after_ready: bool, code: ExitCode | None = None) -> StartFailed:
        """The failure of this run, diagnosed from its output."""
        when = "after it was ready" if after_ready else "before it was ready"
        cls = DiedAfterReady if after_ready else StartFailed
        return explain(cls(f"{what} {when}", code=code), self.server, self.opts)

    def wait_ready(self, stop: StopRequest) -> float:
        timing = self.opts.timing
        assert self.progress is not None
        deadline = self.started + timing.ready_timeout
        with httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0)) as client:
            while True:
                stop.check()
                if failure := self._child_exited(after_ready=False) or self._fatal_logged(False):
                    raise failure
                result = self._probe(client)
                if result.ready:
                    return time.monotonic() - self.started
                now = time.monotonic()
                if now >= deadline:
                    raise ReadyTimeout(
                        f"not ready after {timing.ready_timeout:.0f} s "
                        f"(last probe: {result.reason})",
                        detail=self.server.last_lines(),
                    )
                if self.progress.is_hung(now, self.server.last_output):
                    raise explain(
                        Hung(
                            f"start-up hung: no output, no phase change and no CPU activity for "
                            f"{timing.stall_timeout:.0f} s (last phase: {self.phases.current})",
                            code=ExitCode.STARTUP_HUNG,
                        ),
                        self.server,
                        self.opts,
                    )
                self.ui.status(f"{self.phases.current} … {now - self.started:.0f} s")
                stop.wait(POLL_INTERVAL)

    def _probe(self, client: httpx.Client) -> ProbeResult:
        if self.follower is None:
            return check_models(client, self.opts.base_url, self.opts.model_id, self.opts.api_key)
        said = self.follower.ready()
        return ProbeResult(said is not None, said or "the head has not said ready")

    def watch(self, stop: StopRequest) -> None:
        """After ready: return only by raising (a signal, a death, a hang)."""
        opts, timing = self.opts, self.opts.timing
        engines = EngineWatch(self.server.pid)
        engines.snapshot()
        http = self.follower is None
        next_health = time.monotonic() + timing.health_interval
        next_deep = time.monotonic() + (timing.deep_probe_interval or float("inf"))
        pending: Future[str | None] | None = None
        pending_since = 0.0
        with (
            httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as client,
            ThreadPoolExecutor(max_workers=1) as pool,
        ):
            while True:
                stop.check()
                if failure := self._child_exited(after_ready=True) or self._fatal_logged(True):
                    raise failure
                now = time.monotonic()
                if dead := engines.dead_engine(now):
                    raise explain(
                        DiedAfterReady(
                            f"engine process {dead} died after ready",
                            code=ExitCode.ENGINE_DIED,
                        ),
                        self.server,
                        self.opts,
                    )
                if http and now >= next_health:
                    next_health = now + timing.health_interval
                    if check_health(client, opts.base_url) == 503:
                        raise explain(
                            DiedAfterReady("/health answered 503: the engine is dead"),
                            self.server,
                            self.opts,
                        )
                if http and pending is None and now >= next_deep:
                    pending_since = now
                    pending = pool.submit(
                        deep_probe,
                        opts.base_url,
                        opts.model_id,
                        opts.api_key,
                        custom=opts.custom_server,
                        timeout=timing.deep_probe_timeout,
                    )
                if pending is not None and (
                    pending.done() or now - pending_since > timing.deep_probe_timeout + 5
                ):
                    problem = pending.result() if pending.done() else "deep probe stuck"
                    if problem is not None:
                        raise Hung(
                            f"engine hung: {problem} (while /health may still say 200)",
                            detail=self.server.last_lines(),
                            code=ExitCode.ENGINE_HUNG,
                        )
                    pending, next_deep = None, now + timing.deep_probe_interval
                stop.wait(POLL_INTERVAL)


def run(
    command: Command,
    opts: LaunchOptions,
    ui: Reporter,
    *,
    environ: Mapping[str, str] | None = None,
    on_ready: Callable[[], None] | None = None,
    stop: StopRequest | None = None,
    follower: Follower | None = None,
) -> None:
    """Launch and supervise until a signal or a failure; never leaves a server process behind.
    `stop`: what the loops check between probes (a node group's adds its nodes' departures, a
    worker's the head's word); `follower`: the command is a worker's part of a server (Follower).

    Returns only by raising: Interrupted for a requested stop, another ServeError for a failure,
    StopIncomplete when the stop itself left a process or GPU memory behind. `ui` stays open: its
    creator closes it (a node group's head calls run() once per generation of the group)."""
    stop = stop or StopRequest()
    env = command.environment(os.environ if environ is None else environ)
    restarts = Restarts(opts.restart)
    with signals_to(stop):
        guardian = Guardian(opts.timing.grace)
        try:
            while True:
                run_ = Run(command, opts, ui, env, follower)
                try:
                    _serve(run_, guardian, stop, on_ready)
                except StartFailed as failure:
                    _stop(run_, opts, ui, failure)
                    now = time.monotonic()
                    ready_for = None if run_.ready_at is None else now - run_.ready_at
                    restart = restarts.after(failure, now, ready_for)
                    if restart is None:
                        raise
                    policy = opts.restart
                    ui.event(
                        "restart",
                        f"{failure.message}; restarting in {restart.delay:.0f} s "
                        f"(restart {restart.count} of at most {policy.limit} in "
                        f"{policy.window / 60:.0f} min)",
                        exit_code=int(failure.exit_code),
                        delay=restart.delay,
                    )
                    ui.detail("last lines of the server's output", failure.detail[-10:])
                    stop.wait(restart.delay)
                    stop.check()
                except BaseException as e:
                    _stop(run_, opts, ui, e if isinstance(e, ServeError) else None)
                    raise
        finally:
            guardian.close()
            if opts.ready_file:
                opts.ready_file.unlink(missing_ok=True)


def _serve(
    run_: Run, guardian: Guardian, stop: StopRequest, on_ready: Callable[[], None] | None
) -> None:
    """One run: start, wait for ready, announce it, then watch until something ends it."""
    opts, ui = run_.opts, run_.ui
    run_.start(guardian)
    seconds = run_.wait_ready(stop)
    run_.reached_ready()
    if run_.follower is not None:
        ui.event("ready", f"the group is ready: {run_.follower.ready()} (served by node 0)")
        run_.watch(stop)
        return
    ui.event(
        "ready",
        f"ready: {opts.base_url}/v1 serves {opts.model_id!r} ({seconds:.1f} s to ready)",
        base_url=f"{opts.base_url}/v1",
        model=opts.model_id,
        seconds=round(seconds, 2),
    )
    ui.event("summary", run_.phases.summary(seconds))
    if opts.ready_file:  # what `serve probe --ready-file` reads (probe.py): never the key itself
        key_env = f" {opts.api_key_env}" if opts.api_key_env else ""
        opts.ready_file.write_text(f"{opts.base_url}/v1 {opts.model_id} {seconds:.1f}{key_env}\n")
    if on_ready is not None:
        on_ready()
    run_.watch(stop)


def stop_group(server: ServerProcess, grace: float) -> tuple[float, list[int], str]:
    """Stop a process group and check that it is gone: (seconds taken, members left, the problem,
    "" when none: a member outlived SIGKILL, or a stopped process still holds GPU memory)."""
    t0 = time.monotonic()
    pids = server.members()
    server.stop(grace)
    left = server.members()
    problem = ""
    if left:
        problem = f"processes of the server group left after SIGKILL: {left}"
    elif not wait_released(pids, timeout=GPU_RELEASE_TIMEOUT):
        problem = (
            f"the stopped processes {pids} still hold GPU memory after {GPU_RELEASE_TIMEOUT:.0f} s"
        )
    return time.monotonic() - t0, left, problem


def _stop(run_: Run, opts: LaunchOptions, ui: Reporter, during: ServeError | None) -> None:
    """Stop the group (idempotent) and make sure its processes and GPU memory are gone.

    Raises StopIncomplete when they are not: a launcher that reports a clean stop while an engine
    still holds the GPU sends the operator to the wrong problem (the next start fails on memory)."""
    if run_.server.stopped:
        return
    if opts.ready_file:  # no longer true
        opts.ready_file.unlink(missing_ok=True)
    # Before ready there is no request to drain, and vLLM mid-start may not act on SIGTERM until
    # its engine is built (seen here: 0.6 to 30 s): do not wait the full grace period for it.
    grace = opts.timing.grace
    took, left, problem = stop_group(
        run_.server, grace if run_.ready_at is not None else min(grace, STARTUP_GRACE)
    )
    name = run_.follower.what if run_.follower else "server group"
    if not problem:
        ui.event("stopped", f"{name} stopped in {took:.1f} s; none left")
        return
    ui.event("stopped", f"{name} stop incomplete after {took:.1f} s: {problem}", left=left)
    after = f" (after: {during.message})" if during is not None else ""
    raise StopIncomplete(f"stop incomplete: {problem} (process group {run_.server.pid}){after}")
