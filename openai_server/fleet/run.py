"""`serve fleet --file FLEET.yaml`: every model's launcher, and the router in front of them.

Each model runs under its own `serve launch` (phases, diagnosis, restart policy, stop and verify,
its guardian: everything one model gets), started by the fleet in a session of its own with a
guardian of the fleet's, so that nothing outlives a fleet that is killed. One model failing never
takes the fleet down: the router answers its requests with its cause. SIGTERM/SIGINT: the router
stops taking requests and lets those in flight finish (bounded), then every launcher is stopped
and verified empty; the fleet then exits 143/130 like `serve launch`.

This is the side-by-side fleet: every model resident. Placement by memory fit, sleep-mode swaps,
ttl, preload and pin are not built yet.
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
from .router import ModelState, Routes, make_app
from .spec import Fleet, Member

POLL_S = 0.5
DRAIN_S = 30.0  # how long requests in flight may finish after SIGTERM
LAUNCHER_GRACE_S = 60.0  # a launcher's own stop (vLLM's drain, then its group) fits in this


def say(line: str) -> None:
    print(f"serve: fleet: {line}", file=sys.stderr, flush=True)


class Launcher:
    """One model's `serve launch`, its output prefixed with the model's name."""

    def __init__(self, member: Member, ready: Path, check: bool) -> None:
        self.member = member
        self.ready = ready
        argv = [sys.executable, "-m", "openai_server", "launch", "--profile", member.profile_ref,
                *(a for s in member.sets for a in ("--set", s)), "--ready-file", str(ready),
                "--log-format", "plain", *([] if check else ["--no-check"])]  # fmt: skip
        self.proc = ServerProcess(Command(argv), os.environ, [self._line])
        self.guardian = Guardian(LAUNCHER_GRACE_S)

    def _line(self, line: str) -> None:
        print(f"[{self.member.name}] {line}", file=sys.stderr, flush=True)

    def start(self) -> None:
        self.proc.start()
        self.guardian.watch(self.proc.pid)

    def error_line(self) -> str:
        errors = [ln for ln in self.proc.tail if ln.startswith("serve: error: ")]
        return errors[-1].removeprefix("serve: error: ") if errors else "its launcher exited"

    def stop(self) -> str | None:
        """Stop and verify; the problem, None when nothing is left."""
        self.proc.stop(LAUNCHER_GRACE_S)
        self.guardian.close()
        left = self.proc.members()
        return f"{self.member.name}: processes left {left}" if left else None


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
    for m in fleet.members:
        key = _api_key(m.resolved.profile.api_key_env, f"{fleet.source}: models.{m.name}")
        routes.models[m.name] = ModelState(m.port, api_key=key)
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
    runner = web.AppRunner(make_app(routes), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, fleet.host, fleet.port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise RefusedError(f"{fleet.host}:{fleet.port}: cannot listen: {e.strerror}") from None
    say(f"listening on http://{fleet.host}:{fleet.port}/v1 for {', '.join(routes.models)}")
    try:
        for launcher in launchers:
            launcher.start()
            say(f"{launcher.member.name}: started its launcher (pid {launcher.proc.pid}) on "
                f"127.0.0.1:{launcher.member.port}")  # fmt: skip
        watch = asyncio.create_task(_watch(routes, launchers))
        signum = await stop
        watch.cancel()
        say(f"stopping ({signal.Signals(signum).name}): no new requests; draining those in flight")
        await site.stop()
        await _drain(routes)
        return signum
    finally:
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


async def _watch(routes: Routes, launchers: list[Launcher]) -> None:
    while True:
        for launcher in launchers:
            state = routes.models[launcher.member.name]
            if state.status in ("failed", "stopped"):
                continue
            if launcher.proc.poll() is not None:
                launcher.proc.drain_output()
                state.set("failed", launcher.error_line())
                say(f"{launcher.member.name}: failed: {state.cause}")
            elif state.status == "starting" and launcher.ready.exists():
                state.set("ready")
                say(f"{launcher.member.name}: ready")
            elif state.status == "ready" and not launcher.ready.exists():
                state.set("starting")  # its launcher restarts it
                say(f"{launcher.member.name}: not ready (restarting)")
        await asyncio.sleep(POLL_S)


async def _drain(routes: Routes) -> None:
    deadline = time.monotonic() + DRAIN_S
    with contextlib.suppress(asyncio.CancelledError):
        while any(s.in_flight for s in routes.models.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
