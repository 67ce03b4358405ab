"""`python -m openai_server.custom <vLLM engine flags> --host H --port P`: run the custom server.

The flags are vLLM's own (AsyncEngineArgs on vLLM's parser), so a profile renders the same argv for
both servers; only the server flags below are ours. Order of events, and why:
1. parse: unknown flags fail here, with vLLM's own message;
2. build the engine (minutes), *then* bind the port: a connection means a ready engine, exactly
   like vLLM's server, so the launcher's readiness probe works unchanged;
3. serve until SIGTERM/SIGINT or engine death; then shut the engine down in the lifespan exit,
   before uvicorn re-raises the signal, so no engine process outlives us (vllm 55510).
Exit status: after SIGTERM uvicorn re-raises the signal (143, as vLLM's server); 1 when the engine
died, never 0 (vLLM exits 0 then, which fools supervisors: vllm 48966).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger("openai_server.custom")
API_KEY_VAR = "VLLM_API_KEY"
DEATH_POLL_S = 1.0
SERVER_FLAGS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--host",), {"default": "127.0.0.1"}),
    (("--port",), {"type": int, "default": 7860}),
    (("--shutdown-timeout",), {"type": int, "default": None,
                               "help": "seconds in-flight requests may finish after SIGTERM"}),
    (("--chat-template",), {"default": None,
                            "help": "accepted for profile compatibility; unused (raw prompts)"}),
    (("--uvicorn-log-level",), {"default": "info"}),
]  # fmt: skip


def parser() -> Any:
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser  # 0.32
    except ImportError:
        from vllm.utils import FlexibleArgumentParser  # type: ignore[attr-defined,no-redef]
    from vllm.engine.arg_utils import AsyncEngineArgs

    p = FlexibleArgumentParser(  # type: ignore[no-untyped-call]
        prog="python -m openai_server.custom",
        description="FastAPI + vLLM server streaming Server-Sent Events",
    )
    p = AsyncEngineArgs.add_cli_args(p)
    # Server flags vLLM's engine parser lacks; some (--shutdown-timeout) are engine flags in newer
    # releases and are then left to vLLM.
    title = "server (ours; the rest are vLLM's engine flags)"
    server = p.add_argument_group(title)  # type: ignore[no-untyped-call]
    for flags, kwargs in SERVER_FLAGS:
        if flags[0] not in p._option_string_actions:
            server.add_argument(*flags, **kwargs)
    return p


@contextlib.asynccontextmanager
async def lifespan_for(engine: Any, server: Any, status: dict[str, int]) -> AsyncIterator[None]:
    watcher = asyncio.create_task(watch_engine(engine, server, status))
    try:
        yield
    finally:
        watcher.cancel()
        log.info("shutting down the engine")
        engine.shutdown()


async def watch_engine(engine: Any, server: Any, status: dict[str, int]) -> None:
    """An engine that died takes the server with it: exit 1 so the supervisor restarts us."""
    while engine.alive:
        await asyncio.sleep(DEATH_POLL_S)
    log.error("the engine died; stopping the server (exit 1)")
    status["code"] = 1
    server.should_exit = True


async def serve(args: argparse.Namespace) -> int:
    import uvicorn
    from vllm.engine.arg_utils import AsyncEngineArgs

    from .app import create_app
    from .engine import Engine

    if getattr(args, "chat_template", None):
        log.warning("--chat-template is ignored: /generate and /generate-stream take raw prompts")
    engine = await Engine.build(AsyncEngineArgs.from_cli_args(args))
    status = {"code": 0}
    app = create_app(engine, api_key=os.environ.get(API_KEY_VAR) or None)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.uvicorn_log_level,
        timeout_graceful_shutdown=getattr(args, "shutdown_timeout", None), access_log=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    app.router.lifespan_context = lambda _app: lifespan_for(engine, server, status)
    try:
        await server.serve()
    finally:
        engine.shutdown()  # idempotent; covers a failed bind (port taken), where no lifespan ran
    return status["code"] or (0 if server.started else 1)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:  # the event loop vLLM's own server runs on: measurably faster per streamed token
        import uvloop
    except ImportError:
        return asyncio.run(serve(args))
    return int(uvloop.run(serve(args)))


if __name__ == "__main__":
    sys.exit(main())
