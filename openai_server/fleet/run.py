"""`serve fleet --file FLEET.yaml`: every model's launcher, and the router in front of them.

Each model runs under its own `serve launch` (phases, diagnosis, restart policy, stop and verify,
its guardian: everything one model gets), started by the fleet in a session of its own with a
guardian of the fleet's, so that nothing outlives a fleet that is killed. One model failing never
takes the fleet down: the router answers its requests with its cause. SIGTERM/SIGINT: the router
stops taking requests and lets those in flight finish (bounded), then every launcher is stopped
and verified empty; the fleet then exits 143/130 like `serve launch`.

Models load at the fleet's start (`preload`, the default) or at their first request, and a model
with a `ttl` is unloaded (its launcher stopped) after that long without a request; its next
request starts it again and waits for it. Swapping by memory fit and vLLM's sleep mode are not
built yet: an unload is a stop, a load a start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from ..command import Command
from ..errors import Interrupted, RefusedError
from ..launch.guardian import Guardian
from ..launch.process import ServerProcess
from ..launch.supervisor import stop_group
from .router import PENDING, ModelState, Routes, make_app
from .spec import Fleet, Member

POLL_S = 0.5
DRAIN_S = 30.0  # how long requests in flight may finish after SIGTERM
LAUNCHER_GRACE_S = 60.0  # a launcher's own stop (vLLM's drain, then its group) fits in this


def say(line: str) -> None:
    print(f"serve: fleet: {line}", file=sys.stderr, flush=True)


class Launcher:
    """One model's `serve launch` (a new process at each load), its output prefixed with the
    model's name; a guardian of the fleet's per start."""

    def __init__(self, member: Member, ready: Path, check: bool) -> None:
        self.member = member
        self.ready = ready
        self.argv = [sys.executable, "-m", "openai_server", "launch", "--profile",
                     member.profile_ref, *(a for s in member.sets for a in ("--set", s)),
                     "--ready-file", str(ready), "--log-format", "plain",
                     *([] if check else ["--no-check"])]  # fmt: skip
        self.proc: ServerProcess | None = None
        self.guardian: Guardian | None = None
        self.started_at = 0.0

    def _line(self, line: str) -> None:
        print(f"[{self.member.name}] {line}", file=sys.stderr, flush=True)

    def start(self) -> None:
        self.ready.unlink(missing_ok=True)
        self.proc = ServerProcess(Command(self.argv), os.environ, [self._line])
        self.guardian = Guardian(LAUNCHER_GRACE_S)
        self.started_at = time.monotonic()
        self.proc.start()
        self.guardian.watch(self.proc.pid)

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def error_line(self) -> str:
        assert self.proc is not None
        self.proc.drain_output()
        errors = [ln for ln in self.proc.tail if ln.startswith("serve: error: ")]
        return errors[-1].removeprefix("serve: error: ") if errors else "its launcher exited"

    def stop(self) -> str | None:
        """Stop and verify (idempotent); the problem, None when nothing is left."""
        if self.proc is None or self.guardian is None:
            return None
        _took, _left, problem = stop_group(self.proc, LAUNCHER_GRACE_S)  # the launcher's stop
        self.guardian.close()
        self.ready.unlink(missing_ok=True)
        return f"{self.member.name}: {problem}" if problem else None


def _api_key(var: str | None, what: str) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise RefusedError(f"{what}: api_key_env: the environment variable {var} is not set")
    return value


def run_fleet(fleet: Fleet, *, check: bool = True) -> None:
    """Serve the fleet until a signal; returns only by raising (Interrupted when asked to stop)."""
    routes = Routes({}, api_key=_api_key(fleet.api_key_env, fleet.source))
    routes.queue_timeout = fleet.queue_timeout
    for m in fleet.members:
        key = _api_key(m.resolved.profile.api_key_env, f"{fleet.source}: models.{m.name}")
        routes.models[m.name] = ModelState(
            m.port, "starting" if m.preload else "unloaded", api_key=key
        )
    with tempfile.TemporaryDirectory(prefix="serve-fleet-") as tmp:
        ready = [Path(tmp) / f"ready-{i}" for i in range(len(fleet.members))]
        launchers = [Launcher(m, r, check) for m, r in zip(fleet.members, ready, strict=True)]
        signum = asyncio.run(_serve(fleet, routes, launchers))
    raise Interrupted(signum)


async def _serve(fleet: Fleet, routes: Routes, launchers: list[Launcher]) -> int:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()

    def on_signal(signum: int) -> None:
        if not stop.done():
            stop.set_result(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    # handlers still running after the drain (a stream past DRAIN_S) are cancelled within 5 s
    runner = web.AppRunner(
        make_app(routes), handler_cancellation=True, access_log=None, shutdown_timeout=5.0
    )
    await runner.setup()
    site = web.TCPSite(runner, fleet.host, fleet.port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise RefusedError(f"{fleet.host}:{fleet.port}: cannot listen: {e.strerror}") from None
    say(f"listening on http://{fleet.host}:{fleet.port}/v1 for {', '.join(routes.models)}")
    control = Controller(routes, launchers)
    routes.load = control.load
    watch = None
    try:
        for launcher in launchers:
            if launcher.member.preload:
                control.start(launcher.member.name)
        watch = asyncio.create_task(control.watch())
        signum = await stop
        say(f"stopping ({signal.Signals(signum).name}): no new requests; draining those in flight")
        await site.stop()
        for state in routes.models.values():
            if state.status in PENDING:  # requests waiting for a model get 503 now
                state.set("stopped")
        await _drain(routes)
        return signum
    finally:
        if watch is not None:
            watch.cancel()
        await control.settle()
        await runner.cleanup()
        if routes.session is not None:
            await routes.session.close()
        problems = [p for launcher in launchers if (p := await asyncio.to_thread(launcher.stop))]
        for state in routes.models.values():
            state.set("stopped")
        if problems:
            say(f"stop incomplete: {'; '.join(problems)}")
        else:
            say("every model's launcher stopped; none left")


class Controller:
    """Loads and unloads the models: at start (preload), on a request for one that is not loaded
    (Routes.load), after its ttl without requests; and follows each launcher (ready, restarting
    under its own policy, failed)."""

    def __init__(self, routes: Routes, launchers: list[Launcher]) -> None:
        self.routes = routes
        self.launchers = {launcher.member.name: launcher for launcher in launchers}
        self.wanted: set[str] = set()  # asked for while stopping: start again once stopped
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, name: str) -> None:
        launcher, state = self.launchers[name], self.routes.models[name]
        launcher.start()
        state.set("starting")
        state.loads += 1
        assert launcher.proc is not None
        say(f"{name}: started its launcher (pid {launcher.proc.pid}) on "
            f"127.0.0.1:{launcher.member.port}")  # fmt: skip

    def load(self, name: str) -> None:
        """A request came for `name` (the router calls this for a model that is not ready)."""
        status = self.routes.models[name].status
        if status == "unloaded":
            self.start(name)
        elif status == "stopping":
            self.wanted.add(name)

    async def _unload(self, name: str, why: str) -> None:
        launcher, state = self.launchers[name], self.routes.models[name]
        state.set("stopping")
        say(f"{name}: stopping its engine ({why})")
        problem = await asyncio.to_thread(launcher.stop)
        if problem:
            state.set("failed", f"stop incomplete: {problem}")
            say(f"{name}: {state.cause}")
            return
        state.set("unloaded")
        say(f"{name}: unloaded; it starts again at its next request")
        if name in self.wanted or state.waiting:
            self.wanted.discard(name)
            self.start(name)

    def step(self, now: float) -> None:
        for name, launcher in self.launchers.items():
            state, ttl = self.routes.models[name], launcher.member.ttl
            if state.status in ("starting", "ready") and launcher.exited():
                state.set("failed", launcher.error_line())
                say(f"{name}: failed: {state.cause}")
            elif state.status == "starting" and launcher.ready.exists():
                took = now - launcher.started_at
                state.load_seconds += took
                state.set("ready")
                state.last_used = now
                say(f"{name}: ready ({took:.1f} s)")
            elif state.status == "ready" and not launcher.ready.exists():
                state.set("starting")  # its launcher restarts it (the profile's restart policy)
                launcher.started_at = now
                say(f"{name}: not ready (its launcher restarts it)")
            elif (state.status == "ready" and ttl is not None and not state.in_flight
                  and not state.waiting and now - state.last_used >= ttl):  # fmt: skip
                task = asyncio.create_task(self._unload(name, f"no request for {ttl:g} s: its ttl"))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def watch(self) -> None:
        while True:
            self.step(time.monotonic())
            await asyncio.sleep(POLL_S)

    async def settle(self) -> None:
        """Let unloads under way finish (their launchers' stops are verified there)."""
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def _drain(routes: Routes) -> None:
    deadline = time.monotonic() + DRAIN_S
    with contextlib.suppress(asyncio.CancelledError):
        while any(s.in_flight for s in routes.models.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
