"""Stream a completion from the custom server with `httpx` (async), printing text as it arrives.

    python examples/sse_httpx_client.py --url http://127.0.0.1:7860 --prompt Hi --max-tokens 32

The server sends Server-Sent Events: `data: {"text": "<delta>"}` (only the new text), then
`data: {"finish_reason": ..., "prompt_tokens": N, "completion_tokens": M}`, then `data: [DONE]`.
Leaving the `async with` early closes the connection, and the server aborts the generation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx


async def events(response: httpx.Response) -> AsyncIterator[str]:
    """The `data` of each event: `data:` lines joined, an empty line ends the event."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


async def stream(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """Print the text as it streams; return the final event."""
    final: dict[str, Any] = {}
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as client,
        client.stream("POST", "/generate-stream", json=body) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            sys.exit(f"HTTP {response.status_code}: {response.text}")
        async for data in events(response):
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                sys.exit(f"error: {event['error']}")
            if "text" in event:
                print(event["text"], end="", flush=True)
            else:
                final = event
    print()
    return final


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:7860")
    p.add_argument("--prompt", default="Once upon a time")
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args()
    body = {"prompt": args.prompt, "max_tokens": args.max_tokens}
    final = asyncio.run(stream(args.url, body))
    print(json.dumps(final), file=sys.stderr)


if __name__ == "__main__":
    main()
