"""The fleet's controller never unloads a model under its requests in flight: a swap waits for them
(at most swap_timeout), and gives up rather than cut them. No engine needed: the states are the
router's, the launchers never started (their stop is then a no-op)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from openai_server.fleet.control import Controller
from openai_server.fleet.launcher import Launcher
from openai_server.fleet.router import ModelState, Routes
from openai_server.fleet.spec import Fleet, load_fleet
from openai_server.preflight.gpus import Hardware


def controlled(tmp: Path, extra: str = "") -> tuple[Fleet, Routes, Controller]:
    (tmp / "fleet.yaml").write_text(
        f"max_resident: 1\nmin_residency: 0\n{extra}models:\n"
        "  a: {profile: tiny-cpu}\n  b: {profile: tiny-cpu, preload: false}\n"
    )
    fleet = load_fleet(tmp / "fleet.yaml")
    routes = Routes({m.name: ModelState(m.port) for m in fleet.members})
    launchers = [Launcher(m, tmp / f"ready-{m.name}", False) for m in fleet.members]
    return fleet, routes, Controller(routes, launchers, fleet, Hardware((), "none"))


def test_a_swap_waits_for_the_requests_in_flight_then_unloads(tmp_path: Path) -> None:
    _, routes, control = controlled(tmp_path)
    a = routes.models["a"]
    a.set("ready")
    a.in_flight = 1

    async def scenario() -> list[str]:
        seen = []
        control.unload("a", "swapped out for b", swap=True)
        await asyncio.sleep(0.3)
        seen.append(a.status)  # still answering its request: draining, not stopped
        a.in_flight = 0
        await control.settle()
        seen.append(a.status)
        return seen

    assert asyncio.run(scenario()) == ["draining", "unloaded"]
    assert (a.unloads, a.swaps) == (1, 1)


def test_a_swap_gives_up_rather_than_cut_requests_that_outlast_swap_timeout(
    tmp_path: Path,
) -> None:
    _, routes, control = controlled(tmp_path, "swap_timeout: 0.3\n")
    a = routes.models["a"]
    a.set("ready")
    a.in_flight = 1

    async def scenario() -> str:
        control.unload("a", "swapped out for b", swap=True)
        await control.settle()
        return a.status

    assert asyncio.run(scenario()) == "ready" and a.unloads == 0


def test_a_request_for_a_model_without_room_picks_the_least_recently_used_to_unload(
    tmp_path: Path,
) -> None:
    _, routes, control = controlled(tmp_path)
    routes.models["a"].set("ready")
    routes.models["a"].loaded_at = time.monotonic() - 60
    routes.models["b"].waiting = 1

    async def scenario() -> str:
        control.load("b")  # b does not fit beside a (max_resident 1): a is unloaded first
        status = routes.models["a"].status
        await control.settle()
        return status

    assert asyncio.run(scenario()) == "draining"
    assert routes.models["a"].status == "unloaded" and routes.models["b"].status == "unloaded"
    assert "b" in control.wanted  # loaded at the next step, now that a is gone
