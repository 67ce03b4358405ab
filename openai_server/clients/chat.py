"""`serve chat`: an interactive streaming chat in the terminal, with history.

Ctrl-C during an answer closes that stream (the server then aborts the request and frees its
slot) and keeps the session; the part already shown stays in the history, since the user read it.
Ctrl-C at the prompt drops the line; Ctrl-D or /exit ends the session. /reset forgets the history.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from .endpoint import Endpoint
from .smoke import classify, pick_model

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionMessageParam

HELP = "Ctrl-C stops an answer, Ctrl-D or /exit quits, /reset forgets the history"


@dataclass
class ChatSession:
    client: openai.OpenAI
    model: str
    sampling: dict[str, Any]
    history: list[ChatCompletionMessageParam] = field(default_factory=list)
    out: TextIO = sys.stdout

    def ask(self, text: str) -> str:
        """Stream one answer to `text`; returns what was shown (partial when interrupted)."""
        self.history.append({"role": "user", "content": text})
        shown: list[str] = []
        stream = None
        try:
            # sampling goes in extra_body: only the options the user gave are sent at all
            stream = self.client.chat.completions.create(
                model=self.model, messages=self.history, stream=True, extra_body=self.sampling
            )
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        shown.append(choice.delta.content)
                        self.out.write(choice.delta.content)
                        self.out.flush()
        except KeyboardInterrupt:
            self.out.write(" [stopped]")
        finally:
            if stream is not None:
                stream.close()  # ends the HTTP response, so vLLM aborts the generation
            self.out.write("\n")
            self.out.flush()
        answer = "".join(shown)
        self.history.append({"role": "assistant", "content": answer})
        return answer


def run(
    ep: Endpoint, model: str | None, sampling: dict[str, Any], system: str | None,
    timeout: float,
) -> None:  # fmt: skip
    """The read-answer loop; returns when the user quits."""
    import openai

    client = openai.OpenAI(
        base_url=ep.v1, api_key=ep.api_key or "EMPTY", timeout=timeout, max_retries=0
    )
    chosen = pick_model(client, ep, model, timeout)
    session = ChatSession(client, chosen, sampling)
    if system:
        session.history.append({"role": "system", "content": system})
    print(f"chatting with {chosen} at {ep.root} ({HELP})", flush=True)
    while True:
        try:
            text = input("> ")
        except EOFError:
            print(flush=True)
            return
        except KeyboardInterrupt:
            print(flush=True)
            continue
        command = text.strip()
        if command in ("/exit", "/quit"):
            return
        if command == "/reset":
            del session.history[1 if system else 0 :]
            print("(history cleared)", flush=True)
            continue
        if not command:
            continue
        try:
            session.ask(text)
        except openai.OpenAIError as e:
            session.history.pop()  # the question got no answer: do not send it again
            print(f"error: {classify(e, ep, 'chat', timeout).message}", file=sys.stderr, flush=True)
