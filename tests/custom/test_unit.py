"""The custom server's pure parts: request schema, error lines, SSE wire format, API key check."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from examples.sse_requests_client import events
from openai_server.custom import sse
from openai_server.custom.app import key_ok, validation_message
from openai_server.custom.schemas import GenerateRequest


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "hi"},
        {"prompt": "héllo ✓ 日本", "max_tokens": 1, "temperature": 0, "top_p": 1, "top_k": -1},
        {"prompt": "x", "stop": "."},
        {"prompt": "x", "stop": [".", "\n"], "presence_penalty": -2, "frequency_penalty": 2},
        {"prompt": "x", "ignore_eos": True, "temperature": 2},
    ],
)
def test_valid_requests_are_accepted(body: dict[str, object]) -> None:
    GenerateRequest.model_validate(json.loads(json.dumps(body)))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"prompt": ""}', "prompt"),
        ('{"max_tokens": 4}', "prompt"),
        ('{"prompt": 5}', "prompt"),
        ('{"prompt": "\\ud800"}', "prompt"),  # a lone surrogate: no tokenizer can take it
        ('{"prompt": "x", "temperature": NaN}', "temperature"),
        ('{"prompt": "x", "temperature": Infinity}', "temperature"),
        ('{"prompt": "x", "temperature": 2.5}', "temperature"),
        ('{"prompt": "x", "top_p": 0}', "top_p"),
        ('{"prompt": "x", "top_k": -2}', "top_k"),
        ('{"prompt": "x", "top_k": "5"}', "top_k"),
        ('{"prompt": "x", "max_tokens": 0}', "max_tokens"),
        ('{"prompt": "x", "max_tokens": 1.5}', "max_tokens"),
        ('{"prompt": "x", "max_tokens": 100000000000000000000000000000}', "max_tokens"),
        ('{"prompt": "x", "presence_penalty": 3}', "presence_penalty"),
        ('{"prompt": "x", "stop": [""]}', "stop"),
        (
            '{"prompt": "x", "stop": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]}',
            "stop",
        ),
        ('{"prompt": "x", "stop": 3}', "stop"),
        ('{"prompt": "x", "ignore_eos": "yes"}', "ignore_eos"),
        ('{"prompt": "x", "stream": true}', "stream"),  # unknown fields are errors
    ],
)
def test_invalid_requests_name_the_field(raw: str, field: str) -> None:
    # json.loads, as FastAPI parses bodies: it admits NaN, Infinity and lone surrogates
    with pytest.raises(ValidationError) as info:
        GenerateRequest.model_validate(json.loads(raw))
    message = validation_message(list(info.value.errors()))
    assert message.startswith(field), message
    assert "\n" not in message


def test_validation_message_never_echoes_the_input() -> None:
    errors = [{"loc": ("body", "temperature"), "msg": "Input should be finite", "input": math.nan}]
    assert validation_message(errors) == "temperature: Input should be finite"


def test_sse_event_is_one_data_line_even_for_multiline_text() -> None:
    raw = sse.event({"text": "a\nb ✓"})
    assert raw == 'data: {"text":"a\\nb ✓"}\n\n'.encode()
    assert list(events(iter(raw.decode().split("\n")))) == ['{"text":"a\\nb ✓"}']


def test_sse_parser_joins_multiline_data_and_stops_at_blank_lines() -> None:
    lines = ["data: a", "data: b", "", ": comment", "data: [DONE]", ""]
    assert list(events(iter(lines))) == ["a\nb", "[DONE]"]


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer k3y", True),
        ("Bearer k3", False),
        ("k3y", False),
        (None, False),
        ("Bearer k3yy", False),
    ],
)
def test_api_key_check(header: str | None, ok: bool) -> None:
    assert key_ok(header, "k3y") is ok
