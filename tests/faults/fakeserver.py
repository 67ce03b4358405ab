"""A real HTTP server process that imitates vLLM's OpenAI server, with switches for the faults the
real one cannot produce on demand (a hang with /health 200, an exit 0 after ready, a child that
ignores SIGTERM, a silent start). Standard library only, no vLLM: it starts in well under 0.3 s.

    python tests/faults/fakeserver.py --port 8500 --model m --hang-after-ready 1
    FAKE_VLLM="--hang-after-ready 1 --ignore-sigterm" tests/faults/fake-python -m vllm... --port 8500

Switches are read from argv and from the FAKE_VLLM environment variable (so a profile whose
`python:` is tests/faults/fake-python runs it under the real launcher); vLLM's own flags in argv
are accepted and ignored, except --port, --host, --model and --served-model-name.

--engine-fails-to-start prints what vLLM 0.33 printed on a two-GPU start whose worker failed in
memory profiling (a worker's exception, then "EngineCore failed to start.", the wording of
v1/engine/core.py run_engine_core in 0.26 to 0.33) and then stays alive without serving, as
vLLM's processes did there.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shlex
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKENS = ["Hello", " from", " the", " fake", " server", "."]
VERSION = "0.0.0+fake"


def parse(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fakeserver", allow_abbrev=False)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--model", default="fake-model")
    p.add_argument("--served-model-name", nargs="+", default=None)
    p.add_argument("--ready-after", type=float, default=0.0, help="bind the port only after S s")
    p.add_argument("--exit-before-ready", type=int, default=None, metavar="CODE")
    p.add_argument("--exit-after-ready", default=None, metavar="S:CODE")
    p.add_argument("--hang-after-ready", type=float, default=None, metavar="S")
    p.add_argument("--health-503-after", type=float, default=None, metavar="S")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--print", dest="print_file", default=None, metavar="FILE")
    p.add_argument("--print-at-exit", default=None, metavar="FILE",
                   help="with --exit-after-ready: print FILE's lines just before exiting")  # fmt: skip
    p.add_argument("--silent-busy", type=float, default=None, metavar="S")
    p.add_argument("--silent-idle", action="store_true")
    p.add_argument("--spawn-engine", action="store_true")
    p.add_argument("--engine-ignores-sigterm", action="store_true")
    p.add_argument("--engine-fails-to-start", action="store_true")
    switches = shlex.split(environ.get("FAKE_VLLM", ""))
    args, _ignored = p.parse_known_args(argv + switches)
    return args


class Log:
    """vLLM's line format, so the launcher's phase tracker and diagnosis see familiar lines."""

    def __init__(self, proc: str = "APIServer") -> None:
        self.proc = proc

    def info(self, msg: str, proc: str | None = None, pid: int | None = None) -> None:
        self._emit("INFO", msg, proc, pid)

    def error(self, msg: str, proc: str | None = None, pid: int | None = None) -> None:
        # vLLM prefixes every line of a logged traceback, not only the first
        for line in msg.splitlines():
            self._emit("ERROR", line, proc, pid)

    def _emit(self, level: str, msg: str, proc: str | None, pid: int | None) -> None:
        stamp = time.strftime("%m-%d %H:%M:%S")
        who = f"({proc or self.proc} pid={pid or os.getpid()}) "
        print(f"{who}{level} {stamp} [fakeserver.py:1] {msg}", flush=True)

    @staticmethod
    def raw(line: str) -> None:
        print(line, flush=True)

    def file(self, path: str) -> None:
        # Fixture files begin with '#' comments that say where they came from: not output.
        for line in Path(path).read_text().splitlines():
            if not line.startswith("#"):
                self.raw(line)


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        names = args.served_model_name or [args.model]
        self.model = names[0]
        self.ready_at: float | None = None
        self.engine_pid: int | None = None

    def since_ready(self) -> float:
        return -1.0 if self.ready_at is None else time.monotonic() - self.ready_at

    def hung(self) -> bool:
        s = self.args.hang_after_ready
        return s is not None and self.since_ready() >= s

    def health_code(self) -> int:
        s = self.args.health_503_after
        return 503 if s is not None and self.since_ready() >= s else 200


class Server(ThreadingHTTPServer):
    allow_reuse_address = True  # as uvicorn: a restart must not wait for TIME_WAIT
    daemon_threads = True  # a hung request must not keep the process alive at exit


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the access line is printed in uvicorn's format by _access below

        def _access(self, code: int) -> None:
            peer = f"{self.client_address[0]}:{self.client_address[1]}"
            print(f'INFO:     {peer} - "{self.command} {self.path} HTTP/1.1" {code}', flush=True)

        def _json(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self._access(code)

        def do_GET(self) -> None:
            if self.path == "/health":
                code = state.health_code()
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()
                self._access(code)
            elif self.path == "/v1/models":
                model = {"id": state.model, "object": "model", "created": 0, "owned_by": "vllm",
                         "root": state.args.model, "parent": None, "max_model_len": 2048}  # fmt: skip
                self._json(200, {"object": "list", "data": [model]})
            elif self.path == "/version":
                self._json(200, {"version": VERSION})
            else:
                self._json(404, {"error": {"message": "Not Found", "code": 404}})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._json(400, {"error": {"message": "invalid JSON", "code": 400}})
                return
            chat = self.path == "/v1/chat/completions"
            if not chat and self.path != "/v1/completions":
                self._json(404, {"error": {"message": "Not Found", "code": 404}})
                return
            if state.hung():
                while True:  # an engine that hangs: the request never gets an answer
                    time.sleep(3600)
            if body.get("model") not in (None, state.model):
                msg = f"The model `{body.get('model')}` does not exist."
                self._json(404, {"error": {"message": msg, "type": "NotFoundError", "code": 404}})
                return
            requested = body.get("max_tokens") or body.get("max_completion_tokens")
            n = max(1, min(int(requested or len(TOKENS)), 256))
            tokens = [TOKENS[i % len(TOKENS)] for i in range(n)]
            finish = "length" if requested else "stop"
            if body.get("stream"):
                self._stream(chat, tokens, finish)
            else:
                self._json(200, _completion(chat, state.model, tokens, finish))

        def _stream(self, chat: bool, tokens: list[str], finish: str) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
            for i, tok in enumerate(tokens):
                last = i == len(tokens) - 1
                chunk = _chunk(chat, state.model, tok, finish if last else None)
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self._access(200)

    return Handler


def _completion(chat: bool, model: str, tokens: list[str], finish: str) -> dict[str, Any]:
    text = "".join(tokens)
    usage = {"prompt_tokens": 1, "completion_tokens": len(tokens),
             "total_tokens": 1 + len(tokens)}  # fmt: skip
    if chat:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish,
                                  "message": {"role": "assistant", "content": text}}  # fmt: skip
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": [choice], "usage": usage}  # fmt: skip
    choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    return {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": [choice], "usage": usage}  # fmt: skip


def _chunk(chat: bool, model: str, tok: str, finish: str | None) -> dict[str, Any]:
    if chat:
        choice: dict[str, Any] = {"index": 0, "delta": {"content": tok}, "finish_reason": finish}
        return {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model, "choices": [choice]}  # fmt: skip
    choice = {"index": 0, "text": tok, "finish_reason": finish, "logprobs": None}
    return {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": [choice]}  # fmt: skip


def set_process_name(name: str) -> None:
    """What psutil's name() and `ps -o comm` show (Linux keeps 15 characters: VLLM::EngineCor)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def spawn_engine(ignore_sigterm: bool) -> int:
    """A child in the same process group that stays alive, like vLLM's VLLM::EngineCore."""
    pid = os.fork()
    if pid:
        return pid
    set_process_name("VLLM::EngineCore")
    signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore_sigterm else signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # like vLLM's engine: the API server stops it
    while True:
        time.sleep(3600)


MEMORY_PROFILING = (
    "Error in memory profiling. Initial free memory 12.10 GiB, current free memory 12.62 GiB. "
    "This happens when other processes sharing the same container release GPU memory while vLLM "
    "is profiling during initialization."
)


def engine_fails_to_start(log: Log, engine: int) -> None:
    worker = f"Traceback (most recent call last):\nAssertionError: {MEMORY_PROFILING}"
    log.error(f"WorkerProc hit an exception.\n{worker}", proc="Worker_TP1", pid=engine)
    cause = f"RuntimeError: Worker failed with error '{MEMORY_PROFILING}', please check the stack "
    log.error(
        f"EngineCore failed to start.\nTraceback (most recent call last):\n{cause}trace above "
        "for the root cause",
        proc="EngineCore",
        pid=engine,
    )


def burn(seconds: float) -> None:
    # CPU seconds, not wall time: on a loaded machine the process may get no CPU for a second, and
    # a test that sees it silent must also be able to see it busy before it binds.
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x = (x * 31 + 7) % 1_000_003


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv, dict(os.environ))
    state = State(args)
    log = Log()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: _shutdown(state, 0))
    signal.signal(signal.SIGINT, lambda *_: _shutdown(state, 0))

    if args.silent_idle:
        while True:  # a hung start: no output, no CPU, never binds
            time.sleep(3600)
    if args.silent_busy is not None:
        burn(args.silent_busy)  # a healthy slow start: compiling, silent, CPU busy
    if args.spawn_engine:
        state.engine_pid = spawn_engine(args.engine_ignores_sigterm)

    engine = state.engine_pid or os.getpid()
    log.info(f"vLLM server version {VERSION}, serving model {args.model}")
    log.info(f"non-default args: {{'model': '{args.model}', 'port': {args.port}}}")
    log.info("Resolved architecture: FakeForCausalLM")
    log.info("Using max model len 2048")
    log.info(f"Initializing a V1 LLM engine (v{VERSION}) with config: model='{args.model}'",
             proc="EngineCore", pid=engine)  # fmt: skip
    if args.print_file:
        log.file(args.print_file)
    if args.exit_before_ready is not None:
        _exit(args.exit_before_ready)
    if args.engine_fails_to_start:
        engine_fails_to_start(log, engine)
        while True:  # vLLM's processes stayed alive: no exit, no port, no more output
            time.sleep(3600)

    half = args.ready_after / 2
    time.sleep(half)
    log.info("Loading weights took 0.00 seconds", proc="EngineCore", pid=engine)
    log.info("CPU KV cache size: 16,384 tokens, Maximum concurrency for 2,048 tokens per request: "
             "8.00x", proc="EngineCore", pid=engine)  # fmt: skip
    time.sleep(args.ready_after - half)
    log.info(f"init engine (profile, create kv cache, warmup model) took {args.ready_after:.2f} s",
             proc="EngineCore", pid=engine)  # fmt: skip

    server = Server((args.host, args.port), make_handler(state))
    log.info(f"Starting vLLM server on http://{args.host}:{args.port}")
    log.raw(f"INFO:     Started server process [{os.getpid()}]")
    log.raw("INFO:     Waiting for application startup.")
    log.raw("INFO:     Application startup complete.")
    state.ready_at = time.monotonic()
    if args.exit_after_ready:
        seconds, _, code = args.exit_after_ready.partition(":")
        threading.Timer(float(seconds), _die_after_ready, (state, int(code or 0))).start()
    server.serve_forever(poll_interval=0.1)


def _die_after_ready(state: State, code: int) -> None:
    if state.args.print_at_exit:
        Log().file(state.args.print_at_exit)
    if state.engine_pid:  # the engine died first; the API server follows it
        _kill(state.engine_pid, signal.SIGKILL)
    _exit(code)


def _shutdown(state: State, code: int) -> None:
    Log.raw("INFO:     Shutting down")
    if state.engine_pid:
        _kill(state.engine_pid, signal.SIGTERM)
    _exit(code)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _exit(code: int) -> None:
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
