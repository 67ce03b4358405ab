"""`serve top`: watch a server (or a fleet) and this host's GPUs; `--once --json` for scripts.

Imports neither vLLM nor torch: it must start at once on a host where the server is busy.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import httpx
import typer

from ..cli_common import SetOpt
from ..clients.endpoint import Endpoint, endpoint
from ..errors import ClientError, NoMetrics, NotReady, ServeError
from .fetch import Poll, is_local, poll
from .gpus import GpuSection, read
from .watch import Frame, Watch

# what a snapshot's status means as an exit code (docs/top.md)
FAILURES: dict[str, type[ServeError]] = {
    "unreachable": ClientError,  # 9
    "not ready": NotReady,  # 8
    "no metrics": NoMetrics,  # 36
}


def top_cmd(
    url: Annotated[
        str | None, typer.Option(help="server or fleet root (default: OPENAI_BASE_URL, :8000)")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="take URL and API key variable from a profile"),
    ] = None,
    set_: SetOpt = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="environment variable holding the API key")
    ] = None,
    interval: Annotated[float, typer.Option(min=0.1, help="seconds between refreshes")] = 1.0,
    once: Annotated[
        bool, typer.Option("--once", help="two scrapes one --interval apart, one snapshot, exit")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="with --once: the snapshot as JSON")
    ] = False,
) -> None:
    """Watch a running server and this host's GPUs live (--once --json: one snapshot).

    Exit codes of --once: 0 ok, 9 not reachable, 8 not ready, 36 no vLLM metrics (or behind a
    key)."""
    if as_json and not once:
        raise typer.BadParameter("--json is for one snapshot: add --once", param_hint="'--json'")
    if profile is not None:
        url, api_key_env = _from_profile(profile, set_, url, api_key_env)
    ep = endpoint(url, api_key_env)
    local = is_local(ep.root)
    # a proxy from the environment never reaches this host's loopback (as in probe.py)
    with httpx.Client(timeout=max(2.0, interval), trust_env=not local) as client:
        if once:
            _once(client, ep, local, interval, as_json)
        else:
            _live(client, ep, local, interval)


def _from_profile(
    profile: str, sets: list[str] | None, url: str | None, key_env: str | None
) -> tuple[str, str | None]:
    from .. import loader
    from ..launch.readiness import base_url_for

    prof = loader.load(profile, sets=sets or []).profile
    return url or base_url_for(prof.host, prof.effective_port), key_env or prof.api_key_env


def snapshot(frame: Frame, gpus: GpuSection) -> dict[str, object]:
    return {**frame.as_json(), "at": round(time.time(), 3), "gpus": gpus.as_json()}


def _once(client: httpx.Client, ep: Endpoint, local: bool, interval: float, as_json: bool) -> None:
    watch = Watch(ep.root)
    first = poll(client, ep)
    p: Poll = first
    if first.status == "ok":
        watch.frame(first, time.time())
        time.sleep(interval)
        p = poll(client, ep)
    frame = watch.frame(p, time.time())
    gpus = read(local)
    if as_json:
        print(json.dumps(snapshot(frame, gpus), indent=2))
    else:
        from rich.console import Console

        from .view import render

        console = Console()
        console.print(render(frame, gpus, watch, console.width, 10_000))
    if frame.status != "ok":
        raise FAILURES[frame.status](f"top: {frame.reason}")


def _live(client: httpx.Client, ep: Endpoint, local: bool, interval: float) -> None:
    from rich.console import Console
    from rich.live import Live

    from .view import render

    console = Console()
    watch = Watch(ep.root)
    try:
        with Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                began = time.monotonic()
                # a server that goes away is a frame that says so, and the next poll tries again
                frame = watch.frame(poll(client, ep), time.time())
                if frame.status != "ok":
                    watch.before.clear()  # the next window starts at the next good scrape
                width, height = console.size
                live.update(render(frame, read(local), watch, width, height), refresh=True)
                time.sleep(max(0.0, interval - (time.monotonic() - began)))
    except KeyboardInterrupt:
        pass  # q is Ctrl-C: leaving the view is not an error
