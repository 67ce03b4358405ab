"""`serve smoke`: prove an OpenAI-compatible endpoint answers a streamed chat, through the SDK.

A deployment is not done when /health says 200: production-stack 43 had /health green while every
chat failed for lack of a chat template, and 3486 a served-model-name mismatch. So the smoke test
does what a user's first client does (list models, stream one chat completion) and names the
failure class in one line: auth, model missing, no chat template, timeout, refused, too few chunks.
It also says whether the server takes tool_choice "auto" (and, where not, the server's reason).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import ClientError
from .endpoint import Endpoint, pick_model

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionFunctionToolParam

PROMPT = "Count from one to ten, in words."
MAX_TOKENS = 16
MIN_CONTENT_CHUNKS = 2


class SmokeFailed(ClientError):
    """The smoke test failed; `kind` classifies why (auth, model, template, timeout, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"smoke: {kind}: {message}")
        self.kind = kind
        self.reason = message


@dataclass(frozen=True)
class SmokeResult:
    url: str
    model: str
    content_chunks: int
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str
    ttft_ms: float
    # tokens / (request sent -> last token): the rate a user sees. Not the decode rate after the
    # first token: on a busy host a short answer can arrive in one burst, and that rate explodes.
    tokens_per_s: float
    total_s: float
    # tool_choice "auto": accepted by the server, or its own reason for refusing it (vLLM needs
    # --enable-auto-tool-choice and --tool-call-parser); a refusal is information, not a failure
    tool_choice_auto: bool | None = None
    tool_choice_note: str = ""

    def line(self) -> str:
        tools = ""
        if self.tool_choice_auto is not None:
            verdict = "accepted" if self.tool_choice_auto else "refused"
            note = f" ({self.tool_choice_note})" if self.tool_choice_note else ""
            tools = f"; tool_choice=auto {verdict}{note}"
        return (
            f"ok: {self.model} at {self.url}: {self.completion_tokens} tokens in "
            f"{self.content_chunks} chunks, TTFT {self.ttft_ms:.0f} ms, "
            f"{self.tokens_per_s:.1f} tokens/s, finish_reason={self.finish_reason}{tools}"
        )

    def as_json(self) -> dict[str, Any]:
        return {"ok": True, **asdict(self)}


def run(
    ep: Endpoint, model: str | None, timeout: float, http_client: Any = None,
    completions: bool = False,
) -> SmokeResult:  # fmt: skip
    """List models, pick one, stream a chat completion; raise SmokeFailed on any failure.

    `completions`: stream a plain /v1/completions instead (no chat template, no tool probe), for
    a server whose chat path needs files it cannot have (a rehearsal of gpt-oss: its chat path
    loads the harmony encoding, fetched from the network at the first chat request).
    `http_client` (an httpx or httpx2 Client, which the SDK both accepts) lets tests put a
    MockTransport under the SDK."""
    import openai

    client = openai.OpenAI(
        base_url=ep.v1, api_key=ep.api_key or "EMPTY", timeout=timeout, max_retries=0,
        http_client=http_client,
    )  # fmt: skip
    with client:
        chosen = listed_model(client, ep, model, timeout)
        if completions:
            return _stream(client, ep, chosen, timeout, chat=False)
        result = _stream(client, ep, chosen, timeout, chat=True)
        accepted, note = tool_choice_auto(client, ep, chosen, timeout)
        return replace(result, tool_choice_auto=accepted, tool_choice_note=note)


# The smallest tool a request can offer; the answer is cut at one token, the verdict is the status.
PROBE_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time.",
        "parameters": {"type": "object", "properties": {}},
    },
}


def tool_choice_auto(
    client: openai.OpenAI, ep: Endpoint, model: str, timeout: float
) -> tuple[bool, str]:
    """Whether the server accepts tool_choice="auto", and if not, its own reason (a 400)."""
    import openai

    try:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "What time is it?"}],
            tools=[PROBE_TOOL], tool_choice="auto", max_tokens=1, temperature=0,
        )  # fmt: skip
    except openai.BadRequestError as e:
        return False, f"the server says: {_server_message(e)}"
    except Exception as e:
        raise classify(e, ep, "POST /v1/chat/completions with tools", timeout) from None
    return True, ""


def listed_model(client: openai.OpenAI, ep: Endpoint, model: str | None, timeout: float) -> str:
    """The model to talk to, from the server's /v1/models (see `endpoint.pick_model`)."""
    try:
        ids = [m.id for m in client.models.list()]
    except Exception as e:
        raise classify(e, ep, "GET /v1/models", timeout) from None
    try:
        return pick_model(ids, model)
    except LookupError as e:
        raise SmokeFailed("model missing", str(e)) from None


def _stream(
    client: openai.OpenAI, ep: Endpoint, model: str, timeout: float, chat: bool
) -> SmokeResult:
    chunks = 0
    finish = None
    usage = None
    first = last = 0.0
    start = time.perf_counter()
    path = "/v1/chat/completions" if chat else "/v1/completions"
    common: dict[str, Any] = {
        "model": model, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    try:
        if chat:
            stream: Any = client.chat.completions.create(
                messages=[{"role": "user", "content": PROMPT}], **common
            )
        else:
            stream = client.completions.create(prompt=PROMPT, **common)
        with stream:
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    text = choice.delta.content if chat else choice.text
                    if text:
                        last = time.perf_counter()
                        first = first or last
                        chunks += 1
                    if choice.finish_reason:
                        finish = choice.finish_reason
    except Exception as e:
        raise classify(e, ep, f"POST {path}", timeout) from None
    if chunks < MIN_CONTENT_CHUNKS:
        raise SmokeFailed(
            "too few chunks",
            f"{chunks} content chunk(s) streamed by {model}, need >= {MIN_CONTENT_CHUNKS}",
        )
    if finish is None:
        raise SmokeFailed("no finish reason", f"the stream from {model} ended without one")
    if usage is None:
        raise SmokeFailed(
            "no usage", f"{model} sent no usage chunk although stream_options.include_usage"
        )
    tokens = usage.completion_tokens
    return SmokeResult(
        url=ep.root,
        model=model,
        content_chunks=chunks,
        completion_tokens=tokens,
        prompt_tokens=usage.prompt_tokens,
        finish_reason=finish,
        ttft_ms=(first - start) * 1000,
        tokens_per_s=tokens / (last - start),
        total_s=last - start,
    )


def classify(error: Exception, ep: Endpoint, what: str, timeout: float) -> SmokeFailed:
    """One SmokeFailed line for an exception of the OpenAI SDK."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return SmokeFailed("timeout", f"{what} took longer than {timeout:g} s at {ep.root}")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        text = f"{type(cause).__name__}: {cause}" if cause else str(error)
        if "refused" in text.lower() or "ConnectError" in text:
            return SmokeFailed("connection refused", f"nothing answers at {ep.root} ({what})")
        return SmokeFailed("connection failed", f"{what} at {ep.root}: {text}")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        message = _server_message(error)
        if status in (401, 403):
            hint = "set --api-key-env" if not ep.api_key else "the key was refused"
            return SmokeFailed("auth", f"{what} answered {status} ({hint}): {message}")
        if status == 400 and "chat template" in message.lower():
            return SmokeFailed(
                "no chat template",
                "the server has no chat template for this model "
                f"(give vLLM --chat-template): {message}",
            )
        if status == 404:
            return SmokeFailed("not found", f"{what} answered 404: {message}")
        return SmokeFailed(f"HTTP {status}", f"{what}: {message}")
    return SmokeFailed("error", f"{what}: {type(error).__name__}: {error}")


def _server_message(error: openai.APIStatusError) -> str:
    """The server's own message, on one line (vLLM: {"error": {"message": ...}})."""
    body = error.body
    message: object = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
    text = str(message or error.message)
    return " ".join(text.split())[:300]
