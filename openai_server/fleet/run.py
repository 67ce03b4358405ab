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
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from ..command import Command
from ..errors import Interrupted, RefusedError
from ..launch.guardian import Guardian
from ..launch.process import ServerProcess
from ..launch.supervisor import stop_group
from ..preflight.gpus import Hardware, detect
from .placement import (
    SLEEP_KEEP_BYTES,
    Slot,
    gpus_of,
    share_of,
    sleepers,
    victims,
    weights_on_host,
)
from .router import PENDING, ModelState, Routes, make_app
from .spec import DRAIN_S, Fleet, Member

POLL_S = 0.5
SLEEP_SETS = ("enable_sleep_mode=true", "env.VLLM_SERVER_DEV_MODE=1")
LAUNCHER_GRACE_S = 60.0  # a launcher's own stop (vLLM's drain, then its group) fits in this


def say(line: str) -> None:
    print(f"serve: fleet: {line}", file=sys.stderr, flush=True)


class Launcher:
    """One model's `serve launch` (a new process at each load), its output prefixed with the
    model's name; a guardian of the fleet's per start."""

    def __init__(self, member: Member, ready: Path, check: bool, sleeps: bool = False) -> None:
        self.member = member
        self.ready = ready
        # vLLM serves /sleep and /wake_up only in its dev mode; the engine listens on loopback
        sets = [*member.sets, *(SLEEP_SETS if sleeps else ())]
        self.argv = [sys.executable, "-m", "openai_server", "launch", "--profile",
                     member.profile_ref, *(a for s in sets for a in ("--set", s)),
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
AWAKE = ("starting", "ready", "waking", "draining", "stopping", "sleeping")
LEAVING = ("draining", "stopping", "sleeping")
LIVE = ("starting", "ready", "waking", "draining", "sleeping", "asleep")  # its launcher runs


class Controller:
    """Loads and unloads the models: at start (preload, where they fit), on a request for one that
    is not loaded (Routes.load: swapping out others where it does not fit beside them), after its
    ttl without requests; and follows each launcher (ready, restarting under its own policy,
    failed). An unload waits for the model's requests in flight (at most swap_timeout), then puts
    its engine to sleep (level 1) where it sleeps, else stops its launcher."""

    def __init__(
        self, routes: Routes, launchers: list[Launcher], fleet: Fleet, hardware: Hardware,
        sleep: dict[str, bool] | None = None,
    ) -> None:  # fmt: skip
        self.routes, self.fleet = routes, fleet
        self.launchers = {launcher.member.name: launcher for launcher in launchers}
        self.sleeps = sleep or sleepers(fleet.members, hardware, {}, 0)
        self.gpus = {m.name: tuple(gpus_of(m, hardware.count)) for m in fleet.members}
        self.keep = {i: SLEEP_KEEP_BYTES / g.total_bytes for i, g in enumerate(hardware.gpus)}
        self.wanted: dict[str, float] = {}  # asked for while not loaded: since when (FIFO)
        self.tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def slots(self, now: float) -> list[Slot]:
        out = []
        for m in self.fleet.members:
            state = self.routes.models[m.name]
            where = ("awake" if state.status in AWAKE
                     else "asleep" if state.status == "asleep" else "off")  # fmt: skip
            evictable = (state.status == "ready" and not m.pin
                         and now - state.loaded_at >= self.fleet.min_residency)  # fmt: skip
            out.append(Slot(m.name, self.gpus[m.name], share_of(m), where, evictable,
                            state.last_used, self.sleeps[m.name]))  # fmt: skip
        return out

    def preload(self) -> None:
        for m in self.fleet.members:
            if not (m.preload or m.pin):
                continue
            if victims(m.name, self.slots(time.monotonic()), self.keep,
                       self.fleet.max_resident) == []:  # fmt: skip
                self.start(m.name)
            else:
                say(f"{m.name}: not preloaded (it does not fit beside the models loaded before "
                    f"it); it swaps in at its first request")  # fmt: skip

    def start(self, name: str) -> None:
        launcher, state = self.launchers[name], self.routes.models[name]
        launcher.start()
        state.set("starting")
        assert launcher.proc is not None
        say(f"{name}: started its launcher (pid {launcher.proc.pid}) on "
            f"127.0.0.1:{launcher.member.port}")  # fmt: skip

    def load(self, name: str) -> None:
        """A request came for `name` (the router calls this for a model that is not ready)."""
        if self.routes.models[name].status not in ("starting", "waking"):
            self.wanted.setdefault(name, time.monotonic())
            self.place(time.monotonic())

    def place(self, now: float) -> None:
        """Load the models asked for, oldest ask first, where they fit; else swap others out."""
        for name, since in list(self.wanted.items()):
            state = self.routes.models[name]
            if state.status in ("starting", "waking", "ready", "failed", "stopped") or (
                not state.waiting and now - since > 2.0  # its requests gave up
            ):
                del self.wanted[name]
                continue
            if any(s.status in LEAVING for s in self.routes.models.values()):
                return  # a swap under way: decide again once it has freed what it holds
            out = victims(name, self.slots(now), self.keep, self.fleet.max_resident)
            if out is None:
                continue  # what is in the way is pinned, too young or loading: ask again later
            for victim in out:
                self.unload(victim, f"swapped out for {name}", swap=True)
            if not out:
                del self.wanted[name]
                if state.status == "asleep":
                    self._spawn(self._wake(name))
                else:
                    self.start(name)

    def unload(self, name: str, why: str, swap: bool = False) -> None:
        state = self.routes.models[name]
        state.set("draining")  # from now its new requests wait
        flight = f"; {state.in_flight} request(s) in flight finish first" if state.in_flight else ""
        say(f"{name}: unloading ({why}){flight}")
        self._spawn(self._unload(name, swap))

    async def _unload(self, name: str, swap: bool) -> None:
        state = self.routes.models[name]
        deadline = time.monotonic() + self.fleet.swap_timeout
        while state.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if state.in_flight:  # never put to sleep or stopped under its requests
            state.set("ready")
            say(f"{name}: stays loaded: its requests in flight did not finish within "
                f"swap_timeout ({self.fleet.swap_timeout:g} s)")  # fmt: skip
            return
        began = time.monotonic()
        if self.sleeps[name]:
            state.set("sleeping")
            problem = await self._engine_post(name, "/sleep?level=1", 600)
            if problem is None:
                self._count_unload(state, began, swap, "asleep")
                say(f"{name}: asleep ({time.monotonic() - began:.1f} s; weights in host memory)")
                return
            say(f"{name}: its sleep failed ({problem}); stopping it instead")
        state.set("stopping")
        problem = await asyncio.to_thread(self.launchers[name].stop)
        if problem:
            state.set("failed", f"stop incomplete: {problem}")
            say(f"{name}: {state.cause}")
            return
        self._count_unload(state, began, swap, "unloaded")
        say(f"{name}: unloaded ({time.monotonic() - began:.1f} s); it starts again at its next "
            f"request")  # fmt: skip

    @staticmethod
    def _count_unload(state: ModelState, began: float, swap: bool, status: str) -> None:
        state.set(status)
        state.unloads += 1
        state.unload_seconds += time.monotonic() - began
        state.swaps += swap
        state.last_swap = time.time()

    async def _wake(self, name: str) -> None:
        state = self.routes.models[name]
        state.set("waking")
        began = time.monotonic()
        problem = await self._engine_post(name, "/wake_up", 300)
        if problem is None:
            self._loaded(state, began)
            state.last_swap = time.time()
            say(f"{name}: awake ({time.monotonic() - began:.2f} s)")
            return
        # the memory freed at sleep is not reserved: another process may hold it (vLLM PR 34600)
        say(f"{name}: its wake failed ({problem}); stopping and starting it")
        state.set("stopping")
        if problem := await asyncio.to_thread(self.launchers[name].stop):
            state.set("failed", f"stop incomplete: {problem}")
            return
        self.start(name)

    async def _engine_post(self, name: str, path: str, timeout: float) -> str | None:
        """POST to the engine's own (loopback-only) admin route; the problem, None when done."""
        from aiohttp import ClientError, ClientSession, ClientTimeout

        state = self.routes.models[name]
        headers = {"Authorization": f"Bearer {state.api_key}"} if state.api_key else {}
        try:
            async with (
                ClientSession(timeout=ClientTimeout(total=timeout)) as session,
                session.post(f"http://127.0.0.1:{state.port}{path}", headers=headers) as r,
            ):
                return None if r.status == 200 else f"HTTP {r.status}: {(await r.text())[:200]}"
        except (ClientError, TimeoutError) as e:
            return f"{type(e).__name__}: {e}"

    def _loaded(self, state: ModelState, began: float) -> None:
        now = time.monotonic()
        state.set("ready")
        state.loads += 1
        state.load_seconds += now - began
        state.loaded_at = state.last_used = now

    def step(self, now: float) -> None:
        for name, launcher in self.launchers.items():
            state, member = self.routes.models[name], launcher.member
            if state.status in LIVE and launcher.exited():
                state.set("failed", launcher.error_line())
                say(f"{name}: failed: {state.cause}")
            elif state.status == "starting" and launcher.ready.exists():
                self._loaded(state, launcher.started_at)
                if state.loads > 1:
                    state.last_swap = time.time()
                say(f"{name}: ready ({now - launcher.started_at:.1f} s)")
            elif state.status == "ready" and not launcher.ready.exists():
                state.set("starting")  # its launcher restarts it (the profile's restart policy)
                launcher.started_at = now
                say(f"{name}: not ready (its launcher restarts it)")
            elif (state.status == "ready" and member.ttl is not None and not member.pin
                  and not state.in_flight and not state.waiting
                  and now - state.last_used >= member.ttl):  # fmt: skip
                self.unload(name, f"no request for {member.ttl:g} s: its ttl")
        self.place(now)

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
