"""The same greedy completion from a base model and from a LoRA adapter served beside it.

    serve launch --profile tiny-cpu-lora &
    python examples/lora_completion.py --adapter tiny-phi3-lora

vLLM lists each adapter of the profile's lora_modules in /v1/models next to the base model; a
client picks the adapter by sending its name as `model`. With temperature 0 both answers are
deterministic, so a difference is the adapter at work. Environment: OPENAI_BASE_URL,
OPENAI_API_KEY, as the other examples.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from openai import OpenAI


def main() -> int:
    parser = argparse.ArgumentParser(description="Compare a base model and its LoRA adapter.")
    parser.add_argument("prompt", nargs="?", default="Once upon a time")
    parser.add_argument(
        "--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://localhost:8000/v1")
    )
    parser.add_argument("--adapter", required=True, help="the adapter's name in lora_modules")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"))
    models = client.models.list().data
    adapter = next((m for m in models if m.id == args.adapter), None)
    if adapter is None:
        print(f"{args.adapter} is not served; listed: {[m.id for m in models]}", file=sys.stderr)
        return 1
    # vLLM names the base model of an adapter in its listing (`parent`)
    base = getattr(adapter, "parent", None) or next(m.id for m in models if m.id != args.adapter)
    out = {}
    for model in (base, args.adapter):
        completion = client.completions.create(
            model=model, prompt=args.prompt, max_tokens=args.max_tokens, temperature=0
        )
        out[model] = completion.choices[0].text
    print(json.dumps({"base": base, "adapter": args.adapter, "completions": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
