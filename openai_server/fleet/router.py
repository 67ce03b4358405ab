"""The fleet's one OpenAI endpoint: `/v1/models` lists every model with its state; every other
`/v1/*` request (and vLLM's /tokenize, /detokenize, /pooling, /classify, /score, /rerank) goes to
the engine its `model` names, its answer passed through as it comes.

- Streams are never buffered: each chunk from the engine is written to the client as it arrives;
  a client that goes away closes the engine's connection, which makes vLLM abort the request.
- An unknown model gets 404 with an OpenAI error body that lists the known ones. A request for a
  model that is not loaded (not preloaded, asleep, or unloaded after its ttl or by a swap) asks
  the fleet to load it (`Routes.load`) and waits, as one for a model that is loading or leaving
  does (at most `queue_timeout` seconds, at most `queue_limit` requests a model), then 503 with
  Retry-After; a failed model answers 503 with its cause.
- `GET /fleet` gives each model's state and counts, `GET /metrics` the same as Prometheus metrics
  (both behind the key, as everything but /health: a scrape config sends it as a bearer token).
- The fleet's key (api_key_env) guards everything but /health; an engine's own key, if its profile
  sets one, is the fleet's business: clients never see it. Engines listen on loopback only, so
  their admin routes are not reachable from outside.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

MAX_BODY = 64 * 1024 * 1024  # long prompts, images as data URLs
RETRY_AFTER_S = 5
QUEUE_TIMEOUT_S = 60.0  # how long a request waits for a model that is starting
QUEUE_LIMIT = 64  # requests waiting for one model; more get 503 at once
# a model in these states answers once it is ready: its requests wait for it. draining: chosen to
# be swapped out, its requests in flight finishing; sleeping/asleep/waking: vLLM's sleep mode.
PENDING = ("unloaded", "starting", "stopping", "draining", "sleeping", "asleep", "waking")
# what a client's request may carry to an engine (hop-by-hop and auth headers stay here)
FORWARDED = ("Content-Type", "Accept", "User-Agent")
RETURNED = ("Content-Type", "Cache-Control")
OPEN = ("/health",)  # never behind the fleet's key (probes); Prometheus scrapes with the key


@dataclass
class ModelState:
    port: int
    status: str = "unloaded"  # unloaded | ready | failed | stopped, or one of PENDING
    cause: str | None = None
    api_key: str | None = None  # the engine's own key, from its profile's variable
    in_flight: int = 0
    waiting: int = 0
    requests: int = 0
    since: float = field(default_factory=time.time)  # when the state last changed (epoch s)
    last_used: float = field(default_factory=time.monotonic)  # a request began or ended
    loaded_at: float = 0.0  # when it last became ready (monotonic)
    loads: int = 0  # starts or wakes of its engine, the first included
    load_seconds: float = 0.0  # their time to ready, summed
    unloads: int = 0  # sleeps or stops (ttl or swap)
    unload_seconds: float = 0.0
    swaps: int = 0  # unloads to make room for another model
    last_swap: float | None = None  # epoch s of its last load or unload after the first load
    gpus: tuple[int, ...] = ()  # where its engine runs (NVML indices; none on CPU)
    gpu_share: float | None = None  # its gpu_memory_utilization on each of them
    unload_by: str = "stop"  # sleep (vLLM's sleep mode, level 1) or stop

    def set(self, status: str, cause: str | None = None) -> None:
        self.status, self.cause, self.since = status, cause, time.time()

    def shown(self) -> dict[str, Any]:
        return {"state": self.status, "cause": self.cause, "port": self.port,
                "since": round(self.since, 3), "requests": self.requests,
                "in_flight": self.in_flight, "waiting": self.waiting, "loads": self.loads,
                "load_seconds": round(self.load_seconds, 2), "unloads": self.unloads,
                "unload_seconds": round(self.unload_seconds, 2), "swaps": self.swaps,
                "last_swap": self.last_swap and round(self.last_swap, 3), "gpus": list(self.gpus),
                "gpu_share": self.gpu_share, "unload_by": self.unload_by}  # fmt: skip


@dataclass
class Routes:
    models: dict[str, ModelState]
    api_key: str | None = None
    queue_timeout: float = QUEUE_TIMEOUT_S
    queue_limit: int = QUEUE_LIMIT
    load: Callable[[str], None] | None = None  # start a model that is not loaded (the fleet's)
    session: ClientSession | None = field(default=None, repr=False)


def error(
    status: int, message: str, kind: str, code: str | None = None, **headers: str
) -> web.Response:
    """An OpenAI-style error: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": kind, "param": "model" if code else None,
                      "code": code}}  # fmt: skip
    return web.json_response(body, status=status, headers=headers)


def make_app(routes: Routes) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_auth(routes)])

    async def health(_: web.Request) -> web.StreamResponse:
        states = {n: {"status": s.status, "cause": s.cause} for n, s in routes.models.items()}
        return web.json_response({"status": "ok", "models": states})

    async def status(_: web.Request) -> web.StreamResponse:
        return web.json_response({"models": {n: s.shown() for n, s in routes.models.items()}})

    async def metrics(_: web.Request) -> web.StreamResponse:
        return web.Response(text=prometheus(routes), content_type="text/plain")

    async def models(_: web.Request) -> web.StreamResponse:
        data = [{"id": n, "object": "model", "owned_by": "serve-fleet", "state": s.status}
                for n, s in routes.models.items()]  # fmt: skip
        return web.json_response({"object": "list", "data": data})

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            name = json.loads(body).get("model") if body else None
        except (ValueError, AttributeError):
            return error(400, "the request body is not a JSON object", "invalid_request_error")
        if not isinstance(name, str):
            return error(400, "the request names no model (its `model` field)",
                         "invalid_request_error", "model_not_found")  # fmt: skip
        state = routes.models.get(name)
        if state is None:
            known = ", ".join(routes.models)
            return error(404, f"The model `{name}` does not exist in this fleet; known models: "
                         f"{known}", "invalid_request_error", "model_not_found")  # fmt: skip
        if state.status in PENDING and state.waiting < routes.queue_limit:
            if routes.load is not None:
                routes.load(name)
            await _wait_ready(state, routes.queue_timeout)
        if state.status != "ready":
            why = f" ({state.cause})" if state.cause else ""
            return error(503, f"model `{name}` is {state.status}{why}", "service_unavailable",
                         "model_not_ready", **{"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
        return await _pass_through(request, routes, name, body)

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/fleet", status)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/{tail:.*}", forward)
    # vLLM's routes off the root that name a model (`serve bench` sizes its prompts with these)
    app.router.add_post("/{route:(tokenize|detokenize|pooling|classify|score|rerank)}", forward)
    return app


async def _wait_ready(state: ModelState, timeout: float) -> None:
    """Wait while the model starts (a client that leaves cancels this handler)."""
    state.waiting += 1
    try:
        deadline = time.monotonic() + timeout
        while state.status in PENDING and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        state.waiting -= 1


def prometheus(routes: Routes) -> str:
    """The fleet's own metrics, beside each engine's (which stay on the engines' ports)."""
    rows = [
        ("serve_fleet_requests_total", "counter", "requests routed to the model"),
        ("serve_fleet_requests_in_flight", "gauge", "requests the engine is answering"),
        ("serve_fleet_requests_waiting", "gauge", "requests waiting for the model to start"),
        ("serve_fleet_model_ready", "gauge", "1 when the model answers"),
        ("serve_fleet_model_asleep", "gauge", "1 when its engine sleeps (weights in host memory)"),
        ("serve_fleet_loads_total", "counter", "starts or wakes of the model's engine"),
        ("serve_fleet_load_seconds_total", "counter", "seconds from those to ready"),
        ("serve_fleet_unloads_total", "counter", "sleeps or stops of the model's engine"),
        ("serve_fleet_unload_seconds_total", "counter", "seconds those took"),
        ("serve_fleet_swaps_total", "counter", "unloads to make room for another model"),
    ]
    values = {
        n: (s.requests, s.in_flight, s.waiting, int(s.status == "ready"), int(s.status == "asleep"),
            s.loads, round(s.load_seconds, 3), s.unloads, round(s.unload_seconds, 3), s.swaps)
        for n, s in routes.models.items()
    }  # fmt: skip
    out = []
    for i, (name, kind, text) in enumerate(rows):
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        out += [f'{name}{{model="{m}"}} {v[i]}' for m, v in values.items()]
    return "\n".join(out) + "\n"


def _auth(routes: Routes) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        guarded = routes.api_key and request.path not in OPEN
        if guarded and request.headers.get("Authorization") != f"Bearer {routes.api_key}":
            return error(401, "missing or wrong API key (Authorization: Bearer KEY)",
                         "authentication_error", "invalid_api_key")  # fmt: skip
        response: web.StreamResponse = await handler(request)
        return response

    return check


async def _pass_through(
    request: web.Request, routes: Routes, name: str, body: bytes
) -> web.StreamResponse:
    state = routes.models[name]
    if routes.session is None:
        # no limit on connections (64 concurrent streams are normal); no total timeout (a long
        # generation is not a hang), a short one to connect (the engine is on this host)
        routes.session = ClientSession(
            connector=TCPConnector(limit=0), timeout=ClientTimeout(total=None, sock_connect=5)
        )
    headers = {h: request.headers[h] for h in FORWARDED if h in request.headers}
    if state.api_key:
        headers["Authorization"] = f"Bearer {state.api_key}"
    url = f"http://127.0.0.1:{state.port}{request.rel_url}"
    state.in_flight += 1
    state.requests += 1
    state.last_used = time.monotonic()
    response: web.StreamResponse | None = None
    try:
        async with routes.session.post(url, data=body, headers=headers) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={h: upstream.headers[h] for h in RETURNED if h in upstream.headers},
            )
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except BaseException:
                upstream.close()  # the client left: drop the engine's connection (vLLM aborts)
                raise
            await response.write_eof()
            return response
    except OSError as e:  # aiohttp's ClientConnectorError is one
        if response is not None:  # the answer had begun: only closing it is left
            raise
        return error(502, f"model `{name}`: its engine did not answer ({e})",
                     "service_unavailable", "engine_unreachable")  # fmt: skip
    finally:
        state.in_flight -= 1
        state.last_used = time.monotonic()
