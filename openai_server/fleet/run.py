"""`serve fleet --file FLEET.yaml`: every model's launcher, and the router in front of them.

Each model runs under its own `serve launch` (phases, diagnosis, restart policy, stop and verify,
its guardian: everything one model gets), started by the fleet in a session of its own with a
guardian of the fleet's, so that nothing outlives a fleet that is killed. One model failing never
takes the fleet down: the router answers its requests with its cause. SIGTERM/SIGINT: the router
stops taking requests and lets those in flight finish (bounded), then every launcher is stopped
and verified empty; the fleet then exits 143/130 like `serve launch`.

Models load at the fleet's start (`preload`, the default, where they fit) or at their first
request. A model that does not fit beside those loaded (their GPU shares, `max_resident`) swaps
others out: the least recently used, never a pinned one nor one loaded less than `min_residency`
ago. A model with a `ttl` is unloaded after that long without a request. An unload puts vLLM to
sleep (level 1: weights to host memory, GPU memory freed; a wake takes about a second) on a GPU
host, else stops its launcher (a load is then a full start).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path

from aiohttp import web

from ..errors import Interrupted, RefusedError
from ..preflight.gpus import Hardware, detect
from .control import Controller
from .launcher import Launcher, say
from .placement import gpus_of, share_of, sleepers, weights_on_host
from .router import PENDING, ModelState, Routes, make_app
from .spec import DRAIN_S, Fleet


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
        routes.models[m.name] = ModelState(m.port, api_key=key)
    hardware = detect()
    sleep = _sleepers(fleet, hardware)
    for m in fleet.members:  # what GET /fleet shows of its placement
        state = routes.models[m.name]
        state.unload_by = "sleep" if sleep[m.name] else "stop"
        if hardware.count:
            state.gpus, state.gpu_share = tuple(gpus_of(m, hardware.count)), share_of(m)
    with tempfile.TemporaryDirectory(prefix="serve-fleet-") as tmp:
        ready = [Path(tmp) / f"ready-{i}" for i in range(len(fleet.members))]
        launchers = [Launcher(m, r, check, sleep[m.name])
                     for m, r in zip(fleet.members, ready, strict=True)]  # fmt: skip
        signum = asyncio.run(_serve(fleet, routes, launchers, hardware, sleep))
    raise Interrupted(signum)


def _sleepers(fleet: Fleet, hardware: Hardware) -> dict[str, bool]:
    if not hardware.count:
        return sleepers(fleet.members, hardware, {}, 0)
    import psutil

    weights = {m.name: weights_on_host(m, hardware) for m in fleet.members if m.sleep is None}
    out = sleepers(fleet.members, hardware, weights, psutil.virtual_memory().available)
    for m in fleet.members:
        if m.sleep is None and not out[m.name]:
            say(f"{m.name}: swaps out by stopping: host memory cannot also hold its weights "
                f"({(weights[m.name] or 0) / 2**30:.1f} GiB) for a sleep")  # fmt: skip
    return out


async def _serve(
    fleet: Fleet, routes: Routes, launchers: list[Launcher], hardware: Hardware,
    sleep: dict[str, bool],
) -> int:  # fmt: skip
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
    control = Controller(routes, launchers, fleet, hardware, sleep)
    routes.load = control.load
    watch = None
    try:
        control.preload()
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
        # side by side: the fleet's stop takes its slowest model's (deploy budgets count on it)
        stops = await asyncio.gather(*(asyncio.to_thread(launcher.stop) for launcher in launchers))
        problems = [p for p in stops if p]
        for state in routes.models.values():
            state.set("stopped")
        if problems:
            say(f"stop incomplete: {'; '.join(problems)}")
        else:
            say("every model's launcher stopped; none left")


# where placement counts a model: loading, loaded or leaving holds its whole share; asleep its keep


async def _drain(routes: Routes) -> None:
    deadline = time.monotonic() + DRAIN_S
    with contextlib.suppress(asyncio.CancelledError):
        while any(s.in_flight for s in routes.models.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
