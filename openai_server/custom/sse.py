"""The Server-Sent Events wire format of /generate-stream.

Each event is one `data:` line holding compact JSON (JSON never contains a raw newline, so one line
is always enough), then a blank line. The stream ends with `data: [DONE]`, as OpenAI's does, so
clients written for OpenAI streams stop at the same marker.
"""

from __future__ import annotations

import json
from typing import Any

MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
# Proxies (nginx, Spaces) buffer responses unless told not to; an SSE stream must not be buffered.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# One event as OpenAPI 3.1 describes stream items (schemathesis validates each event against it).
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "description": 'JSON: {"text": delta}, then {"finish_reason", "prompt_tokens", '
            '"completion_tokens"} (or {"error"}), then the literal [DONE]',
        },
        "event": {"type": "string"},
    },
}


def event(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + body.encode() + b"\n\n"
