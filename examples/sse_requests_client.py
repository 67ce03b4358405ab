"""Stream a completion from the custom server with `requests`, printing text as it arrives.

    python examples/sse_requests_client.py --url http://127.0.0.1:7860 --prompt Hi --max-tokens 32

The server sends Server-Sent Events: `data: {"text": "<delta>"}` (only the new text), then
`data: {"finish_reason": ..., "prompt_tokens": N, "completion_tokens": M}`, then `data: [DONE]`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

import requests


def events(lines: Iterator[str]) -> Iterator[str]:
    """The `data` of each event: `data:` lines joined, an empty line ends the event."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


def stream(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """Print the text as it streams; return the final event."""
    final: dict[str, Any] = {}
    endpoint = url.rstrip("/") + "/generate-stream"
    with requests.post(endpoint, json=body, stream=True, timeout=60) as r:
        if r.status_code != 200:
            sys.exit(f"HTTP {r.status_code}: {r.text}")
        for data in events(r.iter_lines(decode_unicode=True)):
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
    final = stream(args.url, {"prompt": args.prompt, "max_tokens": args.max_tokens})
    print(json.dumps(final), file=sys.stderr)


if __name__ == "__main__":
    main()
