"""Stream a chat answer with LangChain's ChatOpenAI pointed at an OpenAI-compatible server.

    python examples/langchain_chat.py "What is PagedAttention?"
    python examples/langchain_chat.py --base-url http://localhost:8000/v1 --model tiny-phi3

OPENAI_BASE_URL (default http://localhost:8000/v1), MODEL (default: the first model the server
lists) and OPENAI_API_KEY (only when the server requires a key) are read from the environment.
"""

from __future__ import annotations

import argparse
import os
import sys

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from openai import OpenAI


def main() -> int:
    parser = argparse.ArgumentParser(description="Stream a chat answer with LangChain.")
    parser.add_argument("prompt", nargs="?", default="Explain continuous batching in one line.")
    parser.add_argument(
        "--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://localhost:8000/v1")
    )
    parser.add_argument("--model", default=os.environ.get("MODEL"))
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    api_key = os.environ.get("OPENAI_API_KEY", "EMPTY")
    model = args.model or OpenAI(base_url=args.base_url, api_key=api_key).models.list().data[0].id
    llm = ChatOpenAI(
        base_url=args.base_url,
        api_key=api_key,  # type: ignore[arg-type]
        model=model,
        max_tokens=args.max_tokens,  # type: ignore[call-arg]
        streaming=True,
    )
    messages = [SystemMessage("You are a concise assistant."), HumanMessage(args.prompt)]
    for chunk in llm.stream(messages):
        print(chunk.content, end="", flush=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
