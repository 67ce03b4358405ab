"""The fleet's decisions: which model to load, which to swap out, when to sleep or stop one, and
what each launcher's process says (ready, restarting under its own policy, failed). The numbers of
placement are placement.py's (pure); this module acts on them, on the router's states."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from ..preflight.gpus import Hardware
from .launcher import Launcher, say
from .placement import SLEEP_KEEP_BYTES, Slot, share_of, sleepers, victims
from .router import ModelState, Routes
from .spec import Fleet

POLL_S = 0.5
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
            out.append(Slot(m.name, state.gpus, share_of(m), where, evictable,
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
