"""Launch: start the server, wait for ready while watching it, keep watching, restart or stop.

Every wait loop does, in order: stop requested? -> child alive? -> engine alive? -> probe ->
deadline / stall -> sleep. A dead child ends the wait at once with its exit code, the diagnosed
cause and the relevant lines; nothing spins. However a run ends, the server's process group is
stopped and checked empty before `run` returns or raises.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from .diagnose import diagnose
from .errors import (
    DiedAfterReady,
    ExitCode,
    Hung,
    Interrupted,
    ReadyTimeout,
    ServeError,
    StartFailed,
)
from .phases import PhaseTracker
from .probe import check_health, check_models, deep_probe
from .profile import Restart
from .render import Command
from .report import Reporter
from .supervise import Guardian, ServerProcess
from .watchdog import EngineWatch, ProgressWatch

POLL_INTERVAL = 0.2  # seconds between readiness probes (the issue asks for <= 0.2 s)
STARTUP_GRACE = 5.0  # the SIGTERM -> SIGKILL wait while the server is not ready yet
STABLE_AFTER = 60.0  # a run ready this long resets the restart backoff (as Kubernetes does)
# Failures that a restart cannot fix: restart: on-failure gives up on them at once.
DETERMINISTIC = {
    "UNRECOGNIZED_ARGUMENT",
    "BF16_UNSUPPORTED",
    "KV_CACHE_TOO_SMALL",
    "MODEL_NOT_FOUND",
    "CPU_ATTENTION_HEAD_SIZE",
}


@dataclass(frozen=True)
class LaunchOptions:
    base_url: str
    model_id: str
    model: str | None = None  # the --model argument (path or hub id), for failure messages
    api_key: str | None = None
    custom_server: bool = False
    ready_timeout: float = 1800.0
    grace: float = 30.0
    ready_file: Path | None = None
    stall_timeout: float = 300.0
    health_interval: float = 5.0
    deep_probe_interval: float = 0.0  # 0: off
    deep_probe_timeout: float = 30.0
    restart: Restart = "never"
    restart_limit: int = 5
    restart_window: float = 600.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0


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


def server_environment(command: Command, environ: Mapping[str, str]) -> dict[str, str]:
    env = dict(environ)
    env.update(command.env)
    for target, source in command.env_from.items():
        if source in environ:
            env[target] = environ[source]
    # vLLM buffers its logs when stdout is a pipe; phases and failures must arrive as they happen.
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def explain(failure: StartFailed, server: ServerProcess, opts: LaunchOptions) -> StartFailed:
    """Attach the diagnosed cause, fix, exit code and relevant lines to a failure."""
    server.drain_output()
    lines = list(server.tail)
    found = diagnose(lines, port=httpx.URL(opts.base_url).port, model=opts.model or opts.model_id)
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
        self, command: Command, opts: LaunchOptions, ui: Reporter, env: dict[str, str]
    ) -> None:
        self.opts = opts
        self.ui = ui
        self.phases = PhaseTracker()
        self.server = ServerProcess(command, env, [self._line])
        self.started = time.monotonic()
        self.progress: ProgressWatch | None = None
        self.ready_at: float | None = None

    def _line(self, line: str) -> None:
        self.ui.raw(line)
        for ev in self.phases.feed(line, time.monotonic()):
            if self.progress is not None:
                self.progress.progressed()
            self.ui.event("phase", ev.describe(), phase=ev.phase, **ev.fields())

    def start(self, guardian: Guardian) -> None:
        self.started = time.monotonic()
        self.phases = PhaseTracker(self.started)
        self.server.start()
        guardian.watch(self.server.pid)
        self.progress = ProgressWatch(self.server.pid, self.opts.stall_timeout)
        self.ui.event(
            "started",
            f"started the server (pid {self.server.pid}); waiting for {self.opts.model_id!r} "
            f"at {self.opts.base_url}/v1/models",
            pid=self.server.pid,
        )

    def reached_ready(self) -> None:
        self.ready_at = time.monotonic()
        ev = self.phases.ready(self.ready_at)
        self.ui.status("ready")
        self.ui.event("phase", ev.describe(), phase=ev.phase, **ev.fields())

    def _child_exited(self, after_ready: bool) -> StartFailed | None:
        code = self.server.poll()
        if code is None:
            return None
        when = "after it was ready" if after_ready else "before it was ready"
        cls = DiedAfterReady if after_ready else StartFailed
        return explain(cls(f"the server exited with code {code} {when}"), self.server, self.opts)

    def wait_ready(self, stop: StopRequest) -> float:
        opts = self.opts
        assert self.progress is not None
        deadline = self.started + opts.ready_timeout
        with httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0)) as client:
            while True:
                stop.check()
                if failure := self._child_exited(after_ready=False):
                    raise failure
                result = check_models(client, opts.base_url, opts.model_id, opts.api_key)
                if result.ready:
                    return time.monotonic() - self.started
                now = time.monotonic()
                if now >= deadline:
                    raise ReadyTimeout(
                        f"not ready after {opts.ready_timeout:.0f} s (last probe: {result.reason})",
                        detail=self.server.last_lines(),
                    )
                if self.progress.is_hung(now, self.server.last_output):
                    raise explain(
                        Hung(
                            f"start-up hung: no output, no phase change and no CPU activity for "
                            f"{opts.stall_timeout:.0f} s (last phase: {self.phases.current})",
                            code=ExitCode.STARTUP_HUNG,
                        ),
                        self.server,
                        self.opts,
                    )
                self.ui.status(f"{self.phases.current} … {now - self.started:.0f} s")
                stop.wait(POLL_INTERVAL)

    def watch(self, stop: StopRequest) -> None:
        """After ready: return only by raising (a signal, a death, a hang)."""
        opts = self.opts
        engines = EngineWatch(self.server.pid)
        engines.snapshot()
        next_health = time.monotonic() + opts.health_interval
        next_deep = time.monotonic() + (opts.deep_probe_interval or float("inf"))
        pending: Future[str | None] | None = None
        pending_since = 0.0
        with (
            httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as client,
            ThreadPoolExecutor(max_workers=1) as pool,
        ):
            while True:
                stop.check()
                if failure := self._child_exited(after_ready=True):
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
                if now >= next_health:
                    next_health = now + opts.health_interval
                    if check_health(client, opts.base_url) == 503:
                        raise explain(
                            DiedAfterReady("/health answered 503: the engine is dead"),
                            self.server,
                            self.opts,
                        )
                if pending is None and now >= next_deep:
                    pending_since = now
                    pending = pool.submit(
                        deep_probe,
                        opts.base_url,
                        opts.model_id,
                        opts.api_key,
                        custom=opts.custom_server,
                        timeout=opts.deep_probe_timeout,
                    )
                if pending is not None and (
                    pending.done() or now - pending_since > opts.deep_probe_timeout + 5
                ):
                    problem = pending.result() if pending.done() else "deep probe stuck"
                    if problem is not None:
                        raise Hung(
                            f"engine hung: {problem} (while /health may still say 200)",
                            detail=self.server.last_lines(),
                            code=ExitCode.ENGINE_HUNG,
                        )
                    pending, next_deep = None, now + opts.deep_probe_interval
                stop.wait(POLL_INTERVAL)


def _restartable(failure: ServeError, policy: Restart) -> bool:
    if policy == "never" or not isinstance(failure, StartFailed):
        return False
    return policy == "always" or failure.exit_code.name not in DETERMINISTIC


def run(
    command: Command,
    opts: LaunchOptions,
    ui: Reporter,
    *,
    environ: Mapping[str, str] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Launch and supervise until a signal or a failure; never leaves a server process behind."""
    stop = StopRequest()
    env = server_environment(command, environ or os.environ)
    restarts: deque[float] = deque()
    consecutive = 0
    with signals_to(stop):
        guardian = Guardian(opts.grace)
        try:
            while True:
                run_ = Run(command, opts, ui, env)
                try:
                    run_.start(guardian)
                    seconds = run_.wait_ready(stop)
                    run_.reached_ready()
                    ui.event(
                        "ready",
                        f"ready: {opts.base_url}/v1 serves {opts.model_id!r} "
                        f"({seconds:.1f} s to ready)",
                        base_url=f"{opts.base_url}/v1",
                        model=opts.model_id,
                        seconds=round(seconds, 2),
                    )
                    ui.event("summary", run_.phases.summary(seconds))
                    if opts.ready_file:
                        opts.ready_file.write_text(
                            f"{opts.base_url}/v1 {opts.model_id} {seconds:.1f}\n"
                        )
                    if on_ready is not None:
                        on_ready()
                    run_.watch(stop)
                except StartFailed as failure:
                    _stop(run_, opts, ui)
                    if not _restartable(failure, opts.restart):
                        raise
                    now = time.monotonic()
                    if run_.ready_at is not None and now - run_.ready_at >= STABLE_AFTER:
                        consecutive = 0  # it ran fine for a while: start the backoff over
                    while restarts and now - restarts[0] > opts.restart_window:
                        restarts.popleft()
                    if len(restarts) >= opts.restart_limit:
                        failure.message = (
                            f"gave up after {len(restarts)} restarts in "
                            f"{opts.restart_window / 60:.0f} min; last failure: {failure.message}"
                        )
                        raise
                    delay = min(opts.backoff_initial * 2**consecutive, opts.backoff_max)
                    consecutive += 1
                    restarts.append(now)
                    ui.event(
                        "restart",
                        f"{failure.message}; restarting in {delay:.0f} s "
                        f"(restart {len(restarts)} of at most {opts.restart_limit} in "
                        f"{opts.restart_window / 60:.0f} min)",
                        exit_code=int(failure.exit_code),
                        delay=delay,
                    )
                    ui.detail("last lines of the server's output", failure.detail[-10:])
                    stop.wait(delay)
                    stop.check()
                finally:
                    _stop(run_, opts, ui)
        finally:
            guardian.close()
            if opts.ready_file:
                opts.ready_file.unlink(missing_ok=True)
            ui.close()


def _stop(run_: Run, opts: LaunchOptions, ui: Reporter) -> None:
    """Stop the group (idempotent) and make sure its processes and GPU memory are gone."""
    if run_.server.stopped:
        return
    if opts.ready_file:  # no longer true
        opts.ready_file.unlink(missing_ok=True)
    t0 = time.monotonic()
    pids = run_.server.members()
    # Before ready there is no request to drain, and vLLM mid-start may not act on SIGTERM until
    # its engine is built (seen here: 0.6 to 30 s): do not wait the full grace period for it.
    run_.server.stop(opts.grace if run_.ready_at is not None else min(opts.grace, STARTUP_GRACE))
    left = run_.server.members()
    if left:
        ui.event("stopped", f"processes left after stop: {left}", leftovers=left)
    from .gpu_release import wait_released

    wait_released(pids, timeout=30.0)
    ui.event("stopped", f"server group stopped in {time.monotonic() - t0:.1f} s; none left")
