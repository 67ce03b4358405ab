"""`serve chat`: Ctrl-C stops the streamed answer, whatever SIGINT looked like when chat started.

A real HTTP server thread streams SSE chunks slowly, so the OpenAI SDK reads a real socket as it
does against vLLM, and the server sees the client hang up. Ctrl-C is a real SIGINT to this
process. The e2e test once saw ^C echoed and the answer stream on to its end: `serve chat` had
inherited SIGINT ignored, and Python then never raises KeyboardInterrupt.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest

from openai_server.clients.chat import ChatSession

CHUNK_DELAY_S = 0.01
CTRL_C_AFTER = 5  # chunks shown
LONG = 300  # chunks: 3 s, long enough that a missed Ctrl-C shows as an answer that ran to its end


class SlowSSE(BaseHTTPRequestHandler):
    """/v1/chat/completions as vLLM streams it: `max_tokens` chunks, one every CHUNK_DELAY_S."""

    protocol_version = "HTTP/1.1"
    client_left: threading.Event

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        events = [
            {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}
            for i in range(body["max_tokens"])
        ]  # fmt: skip
        try:
            for event in [*events, "[DONE]"]:
                data = f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data.encode()))
                self.wfile.flush()
                time.sleep(CHUNK_DELAY_S)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.client_left.set()  # vLLM aborts the request at this point


@pytest.fixture
def server() -> Iterator[tuple[str, threading.Event]]:
    client_left = threading.Event()
    handler = type("Handler", (SlowSSE,), {"client_left": client_left})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", client_left
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def sigint() -> Iterator[None]:
    """Whatever a test sets SIGINT to is undone afterwards."""
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


class Screen(io.StringIO):
    """The terminal: calls `at_chunk` once, when the CTRL_C_AFTER-th chunk of the answer is shown."""

    def __init__(self, at_chunk: Callable[[], None]) -> None:
        super().__init__()
        self.chunks = 0
        self.at_chunk = at_chunk

    def write(self, s: str) -> int:
        if s.startswith("w"):
            self.chunks += 1
            if self.chunks == CTRL_C_AFTER:
                self.at_chunk()
        return super().write(s)


def ctrl_c_from_the_terminal() -> None:
    """SIGINT to the process from outside the main thread, as the terminal sends it."""
    threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT)).start()


def session(url: str, screen: Screen) -> ChatSession:
    client = openai.OpenAI(base_url=url, api_key="x", timeout=30, max_retries=0)
    return ChatSession(client, "m", {"max_tokens": LONG}, out=screen)


def assert_stopped(
    chat: ChatSession, answer: str, screen: Screen, client_left: threading.Event
) -> None:
    assert screen.getvalue().endswith(" [stopped]\n"), screen.getvalue()[-200:]
    assert 0 < answer.count("w") < LONG / 2, f"{answer.count('w')} chunks shown"
    assert chat.history[-1] == {"role": "assistant", "content": answer}  # the part shown stays
    assert client_left.wait(5), "the stream was not closed: the server would go on generating"


def assert_the_session_goes_on(chat: ChatSession) -> None:
    chat.out = screen = io.StringIO()
    chat.sampling = {"max_tokens": 3}
    assert chat.ask("and now?") == "w0 w1 w2 "
    assert screen.getvalue() == "w0 w1 w2 \n"
    assert [m["role"] for m in chat.history] == ["user", "assistant"] * 2


@pytest.mark.usefixtures("sigint")
def test_ctrl_c_stops_the_answer_closes_the_stream_and_restores_the_handler(
    server: tuple[str, threading.Event],
) -> None:
    url, client_left = server
    before = signal.getsignal(signal.SIGINT)
    screen = Screen(ctrl_c_from_the_terminal)
    chat = session(url, screen)
    answer = chat.ask("tell me a long story")
    assert_stopped(chat, answer, screen, client_left)
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C at the prompt: input()'s again
    assert_the_session_goes_on(chat)


@pytest.mark.usefixtures("sigint")
def test_ctrl_c_stops_the_answer_when_sigint_was_inherited_ignored(
    server: tuple[str, threading.Event],
) -> None:
    # what `serve chat` gets when started as `cmd &` by a shell without job control
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    url, client_left = server
    screen = Screen(ctrl_c_from_the_terminal)
    chat = session(url, screen)
    answer = chat.ask("tell me a long story")
    assert_stopped(chat, answer, screen, client_left)
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert_the_session_goes_on(chat)


class Finalizer:
    """Stands for any `__del__` (or generator close, weakref callback) that GC runs mid-stream."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C lands while the finalizer runs


def run_a_finalizer() -> None:
    Finalizer()  # dropped at once: its __del__ runs here, in the main thread, mid-answer


@pytest.mark.usefixtures("sigint")
def test_a_keyboard_interrupt_swallowed_in_a_finalizer_still_stops_the_answer(
    server: tuple[str, threading.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    swallowed: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: swallowed.append(u.exc_value))
    url, client_left = server
    screen = Screen(run_a_finalizer)
    chat = session(url, screen)
    answer = chat.ask("tell me a long story")
    assert len(swallowed) == 1 and isinstance(swallowed[0], KeyboardInterrupt), swallowed
    assert_stopped(chat, answer, screen, client_left)
    assert answer.count("w") == CTRL_C_AFTER  # not one chunk more is shown after Ctrl-C
    assert_the_session_goes_on(chat)
