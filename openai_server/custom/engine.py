"""The one adapter over vLLM's async engine; the rest of the server never touches vLLM directly.

vLLM's engine API moves between releases (the GPU hosts run 0.26, this machine 0.32):
- `AsyncLLM` lives in `vllm.v1.engine.async_llm` in both; `from_engine_args` builds it.
- `get_tokenizer()` is a plain method in 0.32 and was a coroutine in older releases: both handled.
- 0.32 deprecates raw text prompts in `generate()`; token ids (`{"prompt_token_ids": [...]}`) are
  accepted by every release, and we need the ids anyway to check the prompt's length.
- 0.32 suffixes request ids internally, but `abort(external_id)` still finds them.
Only `build()` and the methods below import vLLM, so importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("openai_server.custom")


@dataclass(frozen=True)
class Delta:
    """What one engine step produced for one request."""

    text: str
    n_tokens: int
    finish_reason: str | None  # set on the last delta only


class _Inbox:
    """What the engine produced for one request and the reader has not taken yet, merged.

    A reader that falls behind (a slow client, a busy machine) gets one delta holding all the
    steps since its last read instead of one event per step, as vLLM's own output collector does:
    fewer, larger SSE events exactly when the server has the least CPU to spare.
    """

    __slots__ = ("end", "error", "finish_reason", "ready", "texts", "tokens")

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.texts: list[str] = []
        self.tokens = 0
        self.finish_reason: str | None = None
        self.end = False
        self.error: Exception | None = None

    def put(self, text: str, tokens: int, finish_reason: str | None) -> None:
        self.texts.append(text)
        self.tokens += tokens
        self.finish_reason = finish_reason or self.finish_reason
        self.ready.set()

    def finish(self, error: Exception | None) -> None:
        self.end, self.error = True, error
        self.ready.set()

    def take(self) -> tuple[Delta | None, bool, Exception | None]:
        self.ready.clear()
        delta = None
        if self.texts:
            delta = Delta("".join(self.texts), self.tokens, self.finish_reason)
            self.texts, self.tokens = [], 0
        return delta, self.end, self.error


class RequestRejected(ValueError):
    """The engine refused the request's parameters (a client error: 400)."""


class EngineDead(RuntimeError):
    """The engine process is gone; the server can only answer 503 and exit."""


class Engine:
    """vLLM's AsyncLLM plus what the server needs to know about the served model."""

    def __init__(self, llm: Any, served_names: list[str], tokenizer: Any) -> None:
        self._llm = llm
        self._tokenizer = tokenizer
        model_config = getattr(llm, "model_config", None) or llm.vllm_config.model_config
        self.served_names = served_names
        self.max_model_len: int = int(model_config.max_model_len)
        self.vocab_size: int = int(model_config.get_vocab_size())
        # The profile's `sampling` reaches us as --override-generation-config, merged by vLLM
        # with the model's generation_config.json: a request's own values override these.
        self.default_sampling: dict[str, Any] = dict(model_config.get_diff_sampling_param())
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    async def build(cls, engine_args: Any) -> Engine:
        """Build the engine (loads weights, profiles memory: minutes on a GPU)."""
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        llm = AsyncLLM.from_engine_args(engine_args, usage_context=UsageContext.OPENAI_API_SERVER)
        tokenizer = llm.get_tokenizer()
        if inspect.isawaitable(tokenizer):  # vLLM before 0.11
            tokenizer = await tokenizer
        names = engine_args.served_model_name or engine_args.model
        return cls(llm, [names] if isinstance(names, str) else list(names), tokenizer)

    @property
    def alive(self) -> bool:
        return not bool(self._llm.errored)

    async def tokenize(self, prompt: str) -> list[int]:
        # Off the event loop: a long prompt would otherwise stall every stream.
        ids = await asyncio.to_thread(self._tokenizer.encode, prompt)
        return list(ids)

    def sampling_params(self, values: dict[str, Any], stop: list[str], ignore_eos: bool) -> Any:
        """Profile defaults overridden by the request's values (None = not given)."""
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        params = {**self.default_sampling, **{k: v for k, v in values.items() if v is not None}}
        if params.get("top_k") == 0:  # "disabled" is -1 in every release, 0 only in newer ones
            params["top_k"] = -1
        try:
            # DELTA: the engine hands us only the new text of each step, as vLLM's own server.
            return SamplingParams(
                **params, stop=stop or None, ignore_eos=ignore_eos,
                output_kind=RequestOutputKind.DELTA,
            )  # fmt: skip
        except (ValueError, TypeError) as e:
            raise RequestRejected(str(e)) from e

    async def stream(
        self, prompt_ids: list[int], sampling_params: Any, request_id: str
    ) -> AsyncIterator[Delta]:
        """The request's deltas. Leaving early (client gone, task cancelled) aborts it.

        The engine's generator runs in its own task, out of reach of the caller's cancellation:
        Starlette cancels a streaming response's task group when the client disconnects, and that
        cancellation, hitting inside vLLM's generate(), can interrupt vLLM's own abort halfway
        (0.32 forgets the request in the front end before telling the engine core), leaving the
        engine generating for nobody. Instead, our abort goes out from a fresh task.
        """
        inbox = _Inbox()
        pump = asyncio.create_task(self._pump(prompt_ids, sampling_params, request_id, inbox))
        done = False
        try:
            while True:
                await inbox.ready.wait()
                delta, end, error = inbox.take()
                if delta is not None:
                    yield delta
                if error is not None:
                    done = True
                    raise self._classify(error)
                if end:
                    done = True
                    return
        finally:
            if not done:  # no await here: we may be mid-cancellation
                self._spawn(self._abort(request_id, pump))

    async def _pump(
        self, prompt_ids: list[int], params: Any, request_id: str, inbox: _Inbox
    ) -> None:
        try:
            prompt = {"prompt_token_ids": prompt_ids}
            async for out in self._llm.generate(prompt, params, request_id):
                choice = out.outputs[0]
                inbox.put(choice.text, len(choice.token_ids), choice.finish_reason)
            inbox.finish(None)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            inbox.finish(e)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)  # a task nobody references can be collected mid-flight
        task.add_done_callback(self._background.discard)

    async def _abort(self, request_id: str, pump: asyncio.Task[None]) -> None:
        # Abort by our id while vLLM still maps it to its internal id, then stop the pump
        # (some releases never finish a generator whose request was aborted from outside).
        try:
            await self._llm.abort(request_id)
            log.info("aborted request %s: the client left", request_id)
        except Exception as e:  # a dead engine has nothing left to abort
            log.warning("abort of %s failed: %s", request_id, e)
        finally:
            pump.cancel()

    def _classify(self, e: Exception) -> Exception:
        names = {c.__name__ for c in type(e).__mro__}
        if "EngineDeadError" in names or not self.alive:
            return EngineDead(str(e) or "the engine is dead")
        if names & {"VLLMValidationError", "VLLMClientError", "ValueError"}:
            return RequestRejected(str(e))
        return e

    def shutdown(self) -> None:
        """Stop the engine core processes (they outlive us otherwise: vllm 55510)."""
        self._llm.shutdown()
