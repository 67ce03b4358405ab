"""Consume the server-sent events of /v1/chat/completions with plain `requests`, no SDK.

    python examples/requests_sse_chat.py "Hello"
    python examples/requests_sse_chat.py --base-url http://localhost:8000/v1 --model tiny-phi3

Each event is a line `data: {json chunk}`; the stream ends with `data: [DONE]`. Lines starting
with ':' are comments (keep-alives). OPENAI_BASE_URL (default http://localhost:8000/v1), MODEL
(default: the first model listed) and OPENAI_API_KEY (only if the server requires one) are read
from the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import requests


def main() -> int:
    parser = argparse.ArgumentParser(description="Stream a chat completion over raw SSE.")
    parser.add_argument("prompt", nargs="?", default="Say hello in three languages.")
    parser.add_argument(
        "--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://localhost:8000/v1")
    )
    parser.add_argument("--model", default=os.environ.get("MODEL"))
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    base = args.base_url.rstrip("/")
    headers = {}
    if key := os.environ.get("OPENAI_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    model = args.model
    if not model:
        listed = requests.get(f"{base}/models", headers=headers, timeout=30)
        listed.raise_for_status()
        model = listed.json()["data"][0]["id"]
    body = {
        "model": model,
        "messages": [{"role": "user", "content": args.prompt}],
        "max_tokens": args.max_tokens,
        "stream": True,
    }
    with requests.post(
        f"{base}/chat/completions", json=body, headers=headers, stream=True, timeout=60
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines(decode_unicode=True):
            if not line or line.startswith(":"):
                continue  # event separator or keep-alive comment
            data = line.removeprefix("data:").strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            for choice in chunk.get("choices", []):
                print(choice.get("delta", {}).get("content") or "", end="", flush=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
