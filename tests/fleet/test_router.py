"""The fleet's router against a real engine stand-in (an aiohttp server on loopback that streams
on demand): routing by `model`, OpenAI error bodies, the fleet's key, chunks passed through as they
come, and a client that leaves closing the engine's connection."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from openai_server.fleet.router import ModelState, Routes, make_app
from tests.conftest import free_port

Serve = Callable[[Routes], Awaitable[None]]


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Engine:
    """Streams three chunks 0.3 s apart; records what it saw."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.gone = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/{tail:.*}", self.handle)
        for admin in ("/tokenize", "/sleep", "/wake_up", "/collective_rpc"):
            app.router.add_post(admin, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(await request.json())
        self.auth.append(request.headers.get("Authorization"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i in range(3):
                await response.write(f"data: {i}\n\n".encode())
                await asyncio.sleep(0.3)
        except (ConnectionResetError, asyncio.CancelledError):
            self.gone.set()
            raise
        await response.write_eof()
        return response


def run(test: Callable[[Engine, str, Routes], Awaitable[None]], **routes_kw: Any) -> None:
    async def main() -> None:
        engine = Engine()
        async with serving(engine.app()) as upstream:
            port = int(upstream.rsplit(":", 1)[1])
            routes = Routes({"chat": ModelState(port, status="ready", api_key="engine-key"),
                             "small": ModelState(1, status="starting"),
                             "broken": ModelState(1, status="failed", cause="CUDA out of memory")},
                            **routes_kw)  # fmt: skip
            async with serving(make_app(routes)) as url:
                await test(engine, url, routes)
            if routes.session is not None:
                await routes.session.close()

    asyncio.run(main())


async def post(url: str, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        text = await r.text()
        return r.status, dict(r.headers), json.loads(text) if text.startswith("{") else text


def test_unknown_starting_and_failed_models_get_openai_errors() -> None:
    async def check(engine: Engine, url: str, routes: Routes) -> None:
        status, _, body = await post(f"{url}/v1/chat/completions", {"model": "gpt-4"})
        assert status == 404 and body["error"]["code"] == "model_not_found"
        assert "known models: chat, small, broken" in body["error"]["message"]
        status, headers, body = await post(f"{url}/v1/completions", {"model": "small"})
        assert status == 503 and headers["Retry-After"] == "5"
        assert body["error"]["message"] == "model `small` is starting"
        status, _, body = await post(f"{url}/v1/completions", {"model": "broken"})
        assert status == 503 and "failed (CUDA out of memory)" in body["error"]["message"]
        status, _, body = await post(f"{url}/v1/completions", {"prompt": "no model"})
        assert status == 400 and body["error"]["type"] == "invalid_request_error"
        assert engine.seen == []

    run(check, queue_timeout=0)


def test_a_request_reaches_its_engine_with_the_engines_key_and_streams_as_it_comes() -> None:
    async def check(engine: Engine, url: str, routes: Routes) -> None:
        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            async with s.post(f"{url}/v1/chat/completions", json={"model": "chat", "n": 1},
                              headers={"Authorization": "Bearer the-fleets"}) as r:  # fmt: skip
                assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
                first = await r.content.readline()
                took_first = time.monotonic() - t0
                rest = await r.read()
        assert first == b"data: 0\n" and took_first < 0.25, took_first  # not after the whole body
        assert rest.count(b"data: ") == 2
        assert engine.seen == [{"model": "chat", "n": 1}]
        assert engine.auth == ["Bearer engine-key"]  # the engine's, never the client's
        assert routes.models["chat"].in_flight == 0 and routes.models["chat"].requests == 1

    run(check)


def test_a_client_that_leaves_closes_the_engines_connection() -> None:
    async def check(engine: Engine, url: str, routes: Routes) -> None:
        async with aiohttp.ClientSession() as s:
            r = await s.post(f"{url}/v1/completions", json={"model": "chat"})
            assert await r.content.readline() == b"data: 0\n"
            r.close()  # the client goes away mid-stream
        await asyncio.wait_for(engine.gone.wait(), 5)
        for _ in range(50):
            if routes.models["chat"].in_flight == 0:
                break
            await asyncio.sleep(0.05)
        assert routes.models["chat"].in_flight == 0

    run(check)


def test_the_fleets_key_guards_all_but_health() -> None:
    async def check(engine: Engine, url: str, routes: Routes) -> None:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{url}/v1/models") as r:
                assert r.status == 401
                assert (await r.json())["error"]["type"] == "authentication_error"
            async with s.get(f"{url}/v1/models", headers={"Authorization": "Bearer k"}) as r:
                listed = {m["id"]: m["state"] for m in (await r.json())["data"]}
                assert listed == {"chat": "ready", "small": "starting", "broken": "failed"}
            async with s.get(f"{url}/metrics") as r:
                assert r.status == 401
            async with s.get(f"{url}/health") as r:
                assert r.status == 200
                assert (await r.json())["models"]["broken"]["cause"] == "CUDA out of memory"
        status, _, _ = await post(f"{url}/v1/completions", {"model": "chat"})
        assert status == 401 and engine.seen == []

    run(check, api_key="k")


def test_a_request_for_a_starting_model_waits_for_it_then_is_answered() -> None:
    async def check(engine: Engine, url: str, routes: Routes) -> None:
        chat = routes.models["chat"]
        chat.set("starting")

        async def becomes_ready() -> None:
            while chat.waiting == 0:  # the request is queued
                await asyncio.sleep(0.02)
            async with aiohttp.ClientSession() as s, s.get(f"{url}/fleet") as r:
                assert (await r.json())["models"]["chat"]["waiting"] == 1
            chat.set("ready")

        ready = asyncio.create_task(becomes_ready())
        status, _, body = await post(f"{url}/v1/completions", {"model": "chat"})
        await ready
        assert status == 200 and body.count("data: ") == 3
        assert chat.waiting == 0 and chat.requests == 1

    run(check, queue_timeout=10)


def test_fleet_status_and_prometheus_metrics() -> None:
    async def check(engine: Engine, url: str, routes: Routes) -> None:
        await post(f"{url}/v1/completions", {"model": "chat"})
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{url}/fleet") as r:
                shown = (await r.json())["models"]
            async with s.get(f"{url}/metrics") as r:
                text = await r.text()
        assert shown["chat"]["state"] == "ready" and shown["chat"]["requests"] == 1
        assert shown["broken"]["cause"] == "CUDA out of memory"
        assert 'serve_fleet_requests_total{model="chat"} 1' in text
        assert 'serve_fleet_model_ready{model="small"} 0' in text
        assert "# TYPE serve_fleet_requests_in_flight gauge" in text

    run(check)


def test_a_request_for_an_unloaded_model_asks_the_fleet_to_load_it_and_waits() -> None:
    async def check(engine: Engine, url: str, routes: Routes) -> None:
        chat = routes.models["chat"]
        chat.set("unloaded")
        asked: list[str] = []

        def load(name: str) -> None:  # what the fleet's controller does: start, ready later
            asked.append(name)
            routes.models[name].set("starting")
            asyncio.get_running_loop().call_later(0.3, routes.models[name].set, "ready")

        routes.load = load
        status, _, body = await post(f"{url}/v1/completions", {"model": "chat"})
        assert status == 200 and body.count("data: ") == 3 and asked == ["chat"]

    run(check, queue_timeout=10)


def test_an_engine_that_does_not_answer_is_a_502_naming_the_model() -> None:
    async def check(engine: Engine, url: str, routes: Routes) -> None:
        routes.models["chat"].port = free_port()  # nothing listens there
        status, _, body = await post(f"{url}/v1/completions", {"model": "chat"})
        assert status == 502 and body["error"]["code"] == "engine_unreachable"
        assert body["error"]["message"].startswith("model `chat`: its engine did not answer")
        assert routes.models["chat"].in_flight == 0

    run(check)


def test_vllms_root_routes_that_name_a_model_are_routed_its_admin_routes_never() -> None:
    async def check(engine: Engine, url: str, routes: Routes) -> None:
        status, _, _ = await post(f"{url}/tokenize", {"model": "chat", "prompt": "hi"})
        assert status == 200 and engine.seen == [{"model": "chat", "prompt": "hi"}]
        for admin in ("/sleep?level=1", "/wake_up", "/collective_rpc"):
            status, _, _ = await post(f"{url}{admin}", {"model": "chat"})
            assert status in (404, 405), admin
        assert len(engine.seen) == 1

    run(check)
