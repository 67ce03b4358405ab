"""`serve chat`: an interactive streaming chat in the terminal, with history.

Ctrl-C during an answer closes that stream (the server then aborts the request and frees its
slot) and keeps the session; the part already shown stays in the history, since the user read it.
Ctrl-C at the prompt drops the line; Ctrl-D or /exit ends the session. /reset forgets the history.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from .endpoint import Endpoint
from .smoke import classify, listed_model

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
        with CtrlC() as ctrl_c:
            try:
                ctrl_c.armed = True
                # sampling goes in extra_body: only the options the user gave are sent at all
                stream = self.client.chat.completions.create(
                    model=self.model, messages=self.history, stream=True, extra_body=self.sampling
                )
                for chunk in stream:
                    # a KeyboardInterrupt raised inside a finalizer is swallowed ("Exception
                    # ignored in"); the flag set with it still ends the answer here
                    if ctrl_c.pressed.is_set():
                        break
                    for choice in chunk.choices:
                        if choice.delta.content:
                            shown.append(choice.delta.content)
                            self.out.write(choice.delta.content)
                            self.out.flush()
            except KeyboardInterrupt:
                pass
            finally:
                ctrl_c.armed = False  # a second Ctrl-C must not break off closing the stream
                if stream is not None:
                    stream.close()  # ends the HTTP response, so vLLM aborts the generation
                if ctrl_c.pressed.is_set():
                    self.out.write(" [stopped]")
                self.out.write("\n")
                self.out.flush()
        answer = "".join(shown)
        self.history.append({"role": "assistant", "content": answer})
        return answer


class CtrlC:
    """SIGINT handler for the time of one answer: Ctrl-C stops the answer, never the session.

    Python raises KeyboardInterrupt on SIGINT only if its parent left SIGINT at SIG_DFL. A shell
    without job control starts `cmd &` with SIGINT ignored, and so did whatever ran `make test`
    when the e2e test saw ^C echoed and the answer stream on to its end: so this handler replaces
    whatever disposition was inherited, and puts it back afterwards. While `armed` it raises
    KeyboardInterrupt, which also breaks a blocked socket read; `pressed` is the record that
    survives a KeyboardInterrupt swallowed on the way.
    """

    def __init__(self) -> None:
        self.pressed = threading.Event()
        self.armed = False
        self._installed = False
        self._previous: Callable[[int, FrameType | None], Any] | int | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.pressed.set()
        if self.armed:
            raise KeyboardInterrupt

    def __enter__(self) -> CtrlC:
        # signal handlers can only be set from the main thread; elsewhere Ctrl-C cannot reach us
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.armed = False
        if self._installed:
            # None means a handler set outside Python, which cannot be put back: SIG_DFL is
            # the closest, as it gives KeyboardInterrupt again
            previous = signal.SIG_DFL if self._previous is None else self._previous
            signal.signal(signal.SIGINT, previous)


def run(
    ep: Endpoint, model: str | None, sampling: dict[str, Any], system: str | None,
    timeout: float,
) -> None:  # fmt: skip
    """The read-answer loop; returns when the user quits."""
    import openai

    client = openai.OpenAI(
        base_url=ep.v1, api_key=ep.api_key or "EMPTY", timeout=timeout, max_retries=0
    )
    chosen = listed_model(client, ep, model, timeout)
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
