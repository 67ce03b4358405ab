"""The asyncio load generator of `serve bench`: send streamed requests, time every chunk.

The HTTP client is aiohttp, the one vLLM's own benchmark uses: on a small host the client shares
the CPU with the server, and httpx's async stack cost 2-3x the client CPU per streamed token here
(measured: 0.11 s vs 0.05 s per 1024 tokens), which showed as ~10% less throughput on a 2-core
machine. The same client stack as the reference keeps the two benchmarks comparable.

Timing follows vLLM's benchmark client (vllm/benchmarks/lib/endpoint_request_func.py) so that the
figures compare: the clock starts just before the request is sent; every SSE event that carries a
choice is a token arrival (vLLM's chat stream opens with a role-only choice, sent together with the
first token, and vLLM's client counts it the same way); the usage-only event at the end is not an
arrival, it gives the output token count. Every event of one network read shares one timestamp.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from .endpoint import Endpoint
from .metrics import RequestOutcome
from .workload import Prompt

EndpointKind = Literal["chat", "completions"]


@dataclass(frozen=True)
class Target:
    """Where and how each request is sent."""

    ep: Endpoint
    model: str
    kind: EndpointKind = "chat"
    ignore_eos: bool = True

    @property
    def url(self) -> str:
        return (
            f"{self.ep.v1}/chat/completions" if self.kind == "chat" else f"{self.ep.v1}/completions"
        )

    def payload(self, prompt: Prompt) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": prompt.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.kind == "chat":
            body["messages"] = prompt.chat_messages()
        else:
            body["prompt"] = prompt.text
        if self.ignore_eos:
            body["ignore_eos"] = True  # a vLLM extension: outputs are exactly max_tokens long
        return body


async def send(session: aiohttp.ClientSession, target: Target, prompt: Prompt) -> RequestOutcome:
    """One streamed request, timed; failures are recorded in the outcome, never raised."""
    out = RequestOutcome(prompt_tokens=prompt.prompt_len)
    payload = target.payload(prompt)
    start = last = time.perf_counter()
    out.start_time = start
    try:
        async with session.post(target.url, json=payload, headers=target.ep.headers()) as response:
            if response.status != 200:
                body = (await response.read()).decode(errors="replace")
                out.error = f"HTTP {response.status}: {' '.join(body.split())[:200]}"
                return out
            buffer = b""
            async for data in response.content.iter_any():
                now = time.perf_counter()
                # SSE allows CRLF line ends; vLLM sends LF
                buffer += data.replace(b"\r\n", b"\n") if b"\r" in data else data
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    if _take(event, out, now, start, last):
                        last = now
            if buffer.strip() and _take(buffer, out, time.perf_counter(), start, last):
                last = time.perf_counter()
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:  # ValueError: not JSON
        out.error = f"{type(e).__name__}: {e}"
        return out
    out.latency = last - start
    out.success = out.chunks > 0
    if not out.success:
        out.error = "the stream carried no token"
    return out


def _take(event: bytes, out: RequestOutcome, now: float, start: float, last: float) -> bool:
    """Record one SSE event; True when it was a token arrival."""
    event = event.strip()
    if not event.startswith(b"data:"):
        return False  # a comment (": ping") or an empty keep-alive
    data = event[5:].strip()
    if data == b"[DONE]":
        return False
    chunk = json.loads(data)
    if chunk.get("choices"):
        if out.chunks == 0:
            out.ttft = now - start
        else:
            out.itl.append(now - last)
        out.chunks += 1
        return True
    if usage := chunk.get("usage"):
        out.output_tokens = int(usage.get("completion_tokens") or 0)
        out.prompt_tokens = int(usage.get("prompt_tokens") or out.prompt_tokens)
    return False


async def run_load(
    session: aiohttp.ClientSession,
    target: Target,
    prompts: Sequence[Prompt],
    offsets: Sequence[float],
    max_concurrency: int | None,
    on_done: Callable[[RequestOutcome], None] = lambda _: None,
) -> tuple[list[RequestOutcome], float]:
    """Send `prompts[i]` at `offsets[i]` s (gated by `max_concurrency`); outcomes and duration."""
    gate: AbstractAsyncContextManager[Any] = (
        asyncio.Semaphore(max_concurrency) if max_concurrency else nullcontext()
    )

    async def gated(prompt: Prompt) -> RequestOutcome:
        async with gate:
            outcome = await send(session, target, prompt)
        on_done(outcome)
        return outcome

    start = time.perf_counter()
    tasks = []
    for prompt, offset in zip(prompts, offsets, strict=True):
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(gated(prompt)))
    outcomes = await asyncio.gather(*tasks)
    return list(outcomes), time.perf_counter() - start


def session_for(limit: int | None = None) -> aiohttp.ClientSession:
    """Keep-alive connections (at most `limit`, None: no cap), with no overall time limit.

    One session serves the test request and the timed runs, as in vLLM's benchmark: its
    connections and resolved address are warm when the clock starts."""
    connector = aiohttp.TCPConnector(
        limit=limit or 0, limit_per_host=limit or 0, keepalive_timeout=60
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    # trust_env: HTTP(S)_PROXY and .netrc apply, as for vLLM's benchmark
    return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=True)
