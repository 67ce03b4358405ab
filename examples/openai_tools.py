"""Call a tool through an OpenAI-compatible server with the OpenAI SDK.

    python examples/openai_tools.py "What is the weather in Paris?"
    python examples/openai_tools.py --tool-choice auto --base-url http://localhost:8000/v1

`--tool-choice get_weather` (the default) names the tool: vLLM then constrains the arguments to
the tool's JSON schema, so they validate even for a model that writes noise. `auto` lets the model
decide, which vLLM accepts only when the profile sets enable_auto_tool_choice and a
tool_call_parser; `required` makes some call mandatory. Prints each call's name and arguments as
JSON lines, or the text when the model called nothing. Environment: OPENAI_BASE_URL, MODEL,
OPENAI_API_KEY, as the other examples.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from openai import OpenAI

# Bounded on purpose: a string of at most 40 characters and a day count of 1 to 14, so that even
# a model whose text is noise must close the JSON object within a few dozen tokens.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description="Call a tool with the OpenAI SDK.")
    parser.add_argument("prompt", nargs="?", default="What is the weather in Paris this week?")
    parser.add_argument(
        "--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://localhost:8000/v1")
    )
    parser.add_argument("--model", default=os.environ.get("MODEL"))
    parser.add_argument("--tool-choice", default="get_weather", help="auto, required or a name")
    parser.add_argument("--max-tokens", type=int, default=200)
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"))
    model = args.model or client.models.list().data[0].id
    choice = (
        args.tool_choice
        if args.tool_choice in ("auto", "required", "none")
        else {"type": "function", "function": {"name": args.tool_choice}}
    )
    response = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": args.prompt}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice=choice,  # type: ignore[arg-type]
        max_tokens=args.max_tokens,
        temperature=0,
    )
    message = response.choices[0].message
    for call in message.tool_calls or []:
        arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
        print(json.dumps({"name": call.function.name, "arguments": arguments}))  # type: ignore[union-attr]
    if not message.tool_calls:
        print(f"(no tool call) {message.content}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
