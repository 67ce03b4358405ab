"""One poll of a server: is it reachable, ready, and what do its /metrics say (the HTTP side).

Against a `serve fleet`, the fleet's `/fleet` gives each model's state; its engines' own metrics
are on loopback ports (fleet/router.py), so they are scraped only where `serve top` runs on the
fleet's host. vLLM's --api-key guards /v1 only (vllm/entrypoints/openai/api_server.py,
`authentication` middleware), but a proxy in front may guard /metrics too: the key is sent to
every route.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from ..clients.endpoint import Endpoint
from ..probe import LOOPBACK, judge
from .scrape import NotMetrics, Scrape, parse

Status = Literal["ok", "unreachable", "not ready", "no metrics"]


@dataclass(frozen=True)
class Poll:
    status: Status
    reason: str
    scrapes: dict[str, Scrape] = field(default_factory=dict)  # metrics URL -> its scrape
    listed: tuple[str, ...] = ()  # the models /v1/models lists
    fleet: dict[str, dict[str, Any]] | None = None  # /fleet's "models" (a fleet only)


def is_local(root: str) -> bool:
    """The server runs on this host: a loopback name, or an address of one of its interfaces
    (a server bound to the host's own LAN address is local too: its GPUs are this host's)."""
    host = urlsplit(root).hostname or ""
    if host in LOOPBACK:
        return True
    import socket

    import psutil

    try:
        address = socket.gethostbyname(host)
    except OSError:
        return False
    mine = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    return address in mine or address.startswith("127.")


def poll(client: httpx.Client, ep: Endpoint) -> Poll:
    """Ask /v1/models, /metrics and (a fleet) /fleet; never raises for what the server says."""
    try:
        answer = client.get(f"{ep.v1}/models", headers=ep.headers())
    except httpx.HTTPError as e:
        return Poll("unreachable", f"{ep.root} is not reachable ({type(e).__name__}: {e})")
    ready = judge(f"{ep.v1}/models", answer.status_code, answer.content, None)
    if not ready.ready:
        return Poll("not ready", ready.reason)
    scrape = _scrape(client, ep, ep.root)
    if isinstance(scrape, str):
        return Poll("no metrics", scrape, listed=ready.models)
    scrapes = {ep.root: scrape}
    fleet = None
    if scrape.fleet:
        fleet = _fleet(client, ep)
        for state in (fleet or {}).values():
            # the engines listen on this host's loopback only: reachable from the fleet's host
            if is_local(ep.root) and state.get("state") == "ready" and state.get("port"):
                engine = f"http://127.0.0.1:{state['port']}"
                if not isinstance(got := _scrape(client, Endpoint(engine), engine), str):
                    scrapes[engine] = got
    elif not scrape.models:
        return Poll("no metrics", f"{ep.root}/metrics has no vLLM metrics", listed=ready.models)
    return Poll("ok", "ok", scrapes, ready.models, fleet)


def _scrape(client: httpx.Client, ep: Endpoint, root: str) -> Scrape | str:
    """The scrape, or why there is none."""
    url = f"{root}/metrics"
    try:
        answer = client.get(url, headers=ep.headers())
    except httpx.HTTPError as e:
        return f"{url}: {type(e).__name__}: {e}"
    if answer.status_code in (401, 403):
        return f"{url} answered {answer.status_code}: the metrics are behind a key (--api-key-env)"
    if answer.status_code != 200:
        return f"{url} answered HTTP {answer.status_code}"
    try:
        return parse(answer.text, time.monotonic())
    except NotMetrics as e:
        return f"{url}: {e}"


def _fleet(client: httpx.Client, ep: Endpoint) -> dict[str, dict[str, Any]] | None:
    try:
        models = client.get(f"{ep.root}/fleet", headers=ep.headers()).json()["models"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return models if isinstance(models, dict) else None
