"""The FastAPI routes of the custom server.

Contract (also in /openapi.json):
- POST /generate-stream: `text/event-stream`; `data: {"text": "<delta>"}` events, where `text` is
  the text generated since the previous event (the delta, never the cumulative text), then one final
  `data: {"finish_reason": ..., "prompt_tokens": N, "completion_tokens": M}`, then `data: [DONE]`.
  An error after the stream began arrives as `data: {"error": "..."}` before `[DONE]`.
- POST /generate: the same request, answered in one JSON body (a client that hangs up first
  aborts it in the engine, as a disconnect mid-stream does).
- GET /v1/models (OpenAI list shape; the launcher's readiness probe), /health, /ready, /metrics.
Bad input is always 4xx with one readable line (422 schema, 400 too long for the model), never 5xx.
The server binds its port only once the engine is built, so a connection means a ready engine.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..probe import auth_headers
from . import sse
from .engine import Delta, Engine, EngineDead, RequestRejected
from .schemas import (
    ErrorBody,
    FinalEvent,
    GenerateRequest,
    GenerateResponse,
    Health,
    ModelCard,
    ModelList,
    Ready,
)

DISCONNECT_POLL_S = 0.25
NextHandler = Callable[[Request], Awaitable[Response]]
# Paths that need the API key when one is set; health and metrics stay open, as in vLLM.
GUARDED = ("/v1/", "/generate")
_PLAIN_LOC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the request does not fit the served model"},
    401: {"model": ErrorBody, "description": "missing or wrong API key"},
    422: {"model": ErrorBody, "description": "the request does not match the schema"},
    503: {"model": ErrorBody, "description": "the engine is dead"},
}


class Prepared:
    """A validated request, tokenized and turned into engine sampling parameters."""

    def __init__(self, prompt_ids: list[int], params: Any) -> None:
        self.prompt_ids = prompt_ids
        self.params = params
        self.request_id = f"gen-{uuid.uuid4().hex}"


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def validation_message(errors: list[Any]) -> str:
    """pydantic errors -> one line: `field: problem; field: problem`. Never echoes the input
    (it may hold NaN, which JSON cannot carry, or megabytes of prompt)."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if isinstance(p, int) or _PLAIN_LOC.match(str(p))]
        loc = loc[1:] if loc[:1] == ["body"] else loc
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(parts))  # unions repeat the same complaint


def key_ok(header: str | None, api_key: str) -> bool:
    expected = auth_headers(api_key)["Authorization"].encode()
    return header is not None and hmac.compare_digest(header.encode(), expected)


def create_app(engine: Engine, api_key: str | None = None) -> FastAPI:
    app = FastAPI(title="serve custom server", version="1")
    _errors(app)
    if api_key:
        _auth(app, api_key)
    _generation(app, engine)
    _status(app, engine, created=int(time.time()))
    return app


def _errors(app: FastAPI) -> None:
    """Every error as {"error": message}, validation errors in one line."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        # keep the headers: a 405 must say which methods are allowed (Allow, RFC 9110)
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(_Early)
    async def _early(_: Request, exc: _Early) -> Response:
        return exc.response


def _auth(app: FastAPI, api_key: str) -> None:
    @app.middleware("http")
    async def _guard(request: Request, call_next: NextHandler) -> Response:
        if request.url.path.startswith(GUARDED) and not key_ok(
            request.headers.get("authorization"), api_key
        ):
            return error(401, "missing or wrong API key (Authorization: Bearer <key>)")
        return await call_next(request)


async def prepare(engine: Engine, req: GenerateRequest) -> Prepared | JSONResponse:
    """The request checked against the engine (context room, sampling) and tokenized."""
    if not engine.alive:
        return error(503, "the engine is dead")
    try:
        ids = await engine.tokenize(req.prompt)
    except Exception as e:  # the schema admits only valid text; a tokenizer may still refuse
        return error(400, f"prompt: cannot be tokenized ({type(e).__name__})")
    room = engine.max_model_len - len(ids)
    if not ids:
        return error(400, "prompt: tokenizes to nothing; send some text")
    if room < 1:
        return error(
            400,
            f"prompt: {len(ids)} tokens leave no room to generate within "
            f"max_model_len {engine.max_model_len}",
        )
    if req.max_tokens is not None and req.max_tokens > room:
        return error(
            400,
            f"max_tokens: {req.max_tokens} > {room} (max_model_len {engine.max_model_len} "
            f"minus the prompt's {len(ids)} tokens)",
        )
    values = req.model_dump(exclude={"prompt", "stop", "ignore_eos"})
    if req.top_k is not None and req.top_k > engine.vocab_size:
        values["top_k"] = engine.vocab_size  # the same sampling, in the range vLLM accepts
    if values["max_tokens"] is None and "max_tokens" not in engine.default_sampling:
        values["max_tokens"] = room  # vLLM's own default: the rest of the context
    elif values["max_tokens"] is None:
        values["max_tokens"] = min(int(engine.default_sampling["max_tokens"]), room)
    try:
        params = engine.sampling_params(values, req.stop_list(), req.ignore_eos)
    except RequestRejected as e:
        return error(400, str(e))
    return Prepared(ids, params)


async def first_and_rest(
    engine: Engine, p: Prepared
) -> tuple[Delta, AsyncIterator[Delta]] | JSONResponse:
    """Start the request and wait for its first delta, so that an engine refusal is still
    an HTTP status (once the 200 and the first event are out, errors become events)."""
    stream = engine.stream(p.prompt_ids, p.params, p.request_id)
    try:
        return await anext(stream), stream
    except RequestRejected as e:
        return error(400, str(e))
    except EngineDead as e:
        return error(503, f"the engine is dead: {e}")


async def started(engine: Engine, req: GenerateRequest) -> tuple[Prepared, Delta, Any]:
    """Prepared and started, or _Early with the error response."""
    prepared = await prepare(engine, req)
    if isinstance(prepared, JSONResponse):
        raise _Early(prepared)
    begun = await first_and_rest(engine, prepared)
    if isinstance(begun, JSONResponse):
        raise _Early(begun)
    return prepared, *begun


def _generation(app: FastAPI, engine: Engine) -> None:
    @app.post(
        "/generate-stream",
        response_class=StreamingResponse,
        responses={200: {"content": {sse.MEDIA_TYPE: {"schema": sse.EVENT_SCHEMA}}}, **ERRORS},
    )
    async def generate_stream(req: GenerateRequest) -> Response:
        """Stream the completion as Server-Sent Events (see the module docstring)."""
        prepared, first, rest = await started(engine, req)
        return StreamingResponse(
            events(prepared, first, rest), media_type=sse.MEDIA_TYPE, headers=sse.HEADERS
        )

    @app.post("/generate", responses=ERRORS)
    async def generate(req: GenerateRequest, request: Request) -> GenerateResponse:
        """The whole completion in one answer. A client that hangs up first aborts it."""
        prepared, first, rest = await started(engine, req)
        return await whole(prepared, first, rest, request)


async def whole(prepared: Prepared, first: Delta, rest: Any, request: Request) -> GenerateResponse:
    texts, n, reason = [first.text], first.n_tokens, first.finish_reason

    async def collect() -> None:
        nonlocal n, reason
        async for d in rest:
            texts.append(d.text)
            n += d.n_tokens
            reason = d.finish_reason or reason

    # Nothing is written until the end, so nobody would notice a client that left: ask.
    collecting = asyncio.ensure_future(collect())
    try:
        while not (await asyncio.wait({collecting}, timeout=DISCONNECT_POLL_S))[0]:
            if await request.is_disconnected():
                collecting.cancel()  # engine.stream aborts the request in the engine
                raise _Early(error(499, "client closed the request"))
        collecting.result()
    except RequestRejected as e:
        raise _Early(error(400, str(e))) from e
    except EngineDead as e:
        raise _Early(error(503, f"the engine is dead: {e}")) from e
    finally:
        collecting.cancel()  # a no-op once done; else this handler itself was cancelled
    return GenerateResponse(
        text="".join(texts),
        finish_reason=reason,  # type: ignore[arg-type]
        prompt_tokens=len(prepared.prompt_ids),
        completion_tokens=n,
    )


def _status(app: FastAPI, engine: Engine, created: int) -> None:
    @app.get("/v1/models", responses=ERRORS)
    async def models() -> ModelList:
        cards = [ModelCard(id=n, created=created, max_model_len=engine.max_model_len)
                 for n in engine.served_names]  # fmt: skip
        return ModelList(data=cards)

    @app.get("/health", responses={503: {"model": Health}})
    async def health() -> JSONResponse:
        """200 while the engine is alive, 503 once it is dead."""
        ok = engine.alive
        return JSONResponse({"status": "ok" if ok else "dead"}, status_code=200 if ok else 503)

    @app.get("/ready", responses={503: {"model": Ready}})
    async def ready() -> JSONResponse:
        """200 when requests can be served (the port is bound only after the engine is built)."""
        ok = engine.alive
        body = Ready(ready=ok, models=engine.served_names).model_dump()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """vLLM's own Prometheus counters (requests running, finished by reason, tokens)."""
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class _Early(Exception):
    """Carries a finished error response out of a typed endpoint."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


async def events(p: Prepared, first: Delta, rest: AsyncIterator[Delta]) -> AsyncIterator[bytes]:
    n, reason = first.n_tokens, first.finish_reason
    if first.text:
        yield sse.event({"text": first.text})
    try:
        async for d in rest:
            n += d.n_tokens
            reason = d.finish_reason or reason
            if d.text:
                yield sse.event({"text": d.text})
    except (RequestRejected, EngineDead) as e:
        yield sse.event({"error": str(e)})
        yield sse.DONE
        return
    final = FinalEvent(
        finish_reason=reason,  # type: ignore[arg-type]
        prompt_tokens=len(p.prompt_ids),
        completion_tokens=n,
    )
    yield sse.event(final.model_dump())
    yield sse.DONE
