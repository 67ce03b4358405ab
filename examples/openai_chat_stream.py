"""Stream a chat completion from an OpenAI-compatible server with the OpenAI SDK.

    python examples/openai_chat_stream.py "Tell me about vLLM"
    python examples/openai_chat_stream.py --base-url http://localhost:8000/v1 --model tiny-phi3

The base URL, model and key come from the arguments or the environment: OPENAI_BASE_URL
(default http://localhost:8000/v1), MODEL (default: the first model the server lists),
OPENAI_API_KEY (needed only when the server was started with an API key).
"""

from __future__ import annotations

import argparse
import os
import sys

from openai import OpenAI


def main() -> int:
    parser = argparse.ArgumentParser(description="Stream a chat completion with the OpenAI SDK.")
    parser.add_argument("prompt", nargs="?", default="Write a haiku about GPUs.")
    parser.add_argument(
        "--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://localhost:8000/v1")
    )
    parser.add_argument("--model", default=os.environ.get("MODEL"))
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"))
    model = args.model or client.models.list().data[0].id
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": args.prompt}],
        max_tokens=args.max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
        if chunk.usage:
            print(f"\n[{chunk.usage.completion_tokens} tokens]", file=sys.stderr)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
