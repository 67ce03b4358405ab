"""The custom server's API contract: request and response models. No vLLM import (unit-tested).

Everything a client can send is bounded here, so that bad input is answered 422 before it reaches
the engine: a NaN temperature, a 10**30 top_k or a lone UTF-16 surrogate in a stop string must never
become an engine error (a 5xx, or worse, a dead engine for everybody). Bounds that depend on the
served model (prompt length in tokens, max_tokens against max_model_len, top_k against the
vocabulary) are checked per request in app.py and answered 400.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# vLLM's own upper bound for max_model_len; a static ceiling so the schema itself is bounded.
MAX_TOKENS_CEILING = 10_485_760
# About 64 characters per token for the longest context vLLM accepts: anything longer cannot fit,
# and tokenizing megabytes just to say so would stall the server.
MAX_PROMPT_CHARS = 4_000_000
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 512


def _utf8(text: str) -> str:
    # JSON can carry lone surrogates ("\ud800"); the tokenizer and the engine's msgpack cannot.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"not valid Unicode text ({e.reason} at position {e.start})") from None
    return text


Utf8Text = Annotated[str, AfterValidator(_utf8)]
StopString = Annotated[Utf8Text, Field(min_length=1, max_length=MAX_STOP_CHARS)]
StopList = Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)]


class Strict(BaseModel):
    # strict: "1" is not an int, 1 is not a bool; forbid: a misspelt field is an error, never
    # silently ignored; no inf/nan: vLLM would reject them later, as a server error.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class GenerateRequest(Strict):
    """A completion request. Unset sampling fields take the profile's `sampling` defaults."""

    prompt: Utf8Text = Field(
        ..., min_length=1, max_length=MAX_PROMPT_CHARS, description="raw text, no chat template"
    )
    max_tokens: int | None = Field(
        None,
        ge=1,
        le=MAX_TOKENS_CEILING,
        description="tokens to generate; at most max_model_len minus the prompt's tokens",
    )
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(
        None, ge=-1, le=MAX_TOKENS_CEILING, description="-1 or 0 disables; at most the vocab size"
    )
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    stop: StopString | StopList | None = Field(
        None, description="a string or up to 16 strings; generation ends before the first one"
    )
    ignore_eos: bool = Field(
        False, description="keep generating past end-of-sequence (fixed-length benchmarks)"
    )

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


FinishReason = Literal["stop", "length", "abort"]


class GenerateResponse(Strict):
    """The answer of POST /generate."""

    text: str
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int


class TextEvent(Strict):
    """One `data:` event of /generate-stream: the text generated since the previous event."""

    text: str = Field(..., description="the delta (new text only), never the cumulative text")


class FinalEvent(Strict):
    """The last `data:` event before `data: [DONE]`."""

    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int


class ErrorBody(BaseModel):
    """Every error answer: one line a person can act on."""

    error: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "serve"
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "dead"]


class Ready(BaseModel):
    ready: bool
    models: list[str]
