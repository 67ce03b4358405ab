"""`serve probe` on its fast path (openai_server/probe.py, run by openai_server/main.py before the
CLI is imported): the same judgement and the same exit codes and lines as the CLI's, against a
real HTTP server on loopback; what it leaves to the CLI; the launcher's ready file."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from openai_server.errors import ExitCode
from openai_server.probe import _options, fast, from_ready_file, judge
from tests.conftest import SERVE, free_port

URL = "http://h/v1/models"


def listing(*ids: str) -> bytes:
    return json.dumps({"object": "list", "data": [{"id": i} for i in ids]}).encode()


@pytest.mark.parametrize(
    ("status", "body", "model", "ready", "says"),
    [
        (200, listing("a", "m"), "m", True, "ready"),
        (200, listing("a"), "m", False, "model 'm' not listed (listed: a)"),
        (200, listing(), None, False, "no model listed yet"),
        (200, listing("a"), None, True, "ready"),
        (401, b"", "m", False, "answered 401: wrong or missing API key"),
        (503, b"", "m", False, "answered HTTP 503"),
        (200, b"<html>", "m", False, "did not answer an OpenAI model list"),
        (200, b'{"data": [{"name": 1}]}', "m", False, "did not answer an OpenAI model list"),
    ],
)
def test_judge(status: int, body: bytes, model: str | None, ready: bool, says: str) -> None:
    result = judge(URL, status, body, model)
    assert result.ready is ready and says in result.reason


@pytest.mark.parametrize(
    "argv",
    [["--profile", "x"], ["-p", "x"], ["--set", "port=1"], ["--help"], ["--url"], ["--wiat", "3"]],
)
def test_anything_but_its_own_options_goes_to_the_cli(argv: list[str]) -> None:
    assert _options(argv) is None
    assert fast(["probe", *argv]) is None
    assert fast(["render", "-p", "tiny-cpu"]) is None


class Models(BaseHTTPRequestHandler):
    key: str | None = None

    def do_GET(self) -> None:
        if self.key and self.headers.get("Authorization") != f"Bearer {self.key}":
            self.send_response(401)
            self.end_headers()
            return
        body = listing("tiny-phi3")
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Models.key = "s3cret"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def serve_probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([*SERVE, "probe", *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_ready_with_the_key_from_its_variable(server: str) -> None:
    out = serve_probe("--url", server, "--model", "tiny-phi3", "--api-key-env", "K",
                      env={"K": "s3cret"})  # fmt: skip
    assert (out.returncode, out.stdout) == (0, f"ready: {server} lists tiny-phi3\n"), out.stderr
    wrong = serve_probe(f"--url={server}", "--model=tiny-phi3")
    assert wrong.returncode == ExitCode.NOT_READY
    assert wrong.stderr == f"serve: error: {server}/v1/models answered 401: wrong or missing " \
                           "API key\n"  # fmt: skip


def test_refused_port_is_one_line_and_exit_8() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = serve_probe("--url", url, "--timeout", "1")
    assert out.returncode == ExitCode.NOT_READY
    assert out.stderr == f"serve: error: connection refused at {url}/v1/models\n"


def test_the_ready_file_names_url_model_and_key_variable(server: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    out = serve_probe("--ready-file", str(ready))
    assert out.returncode == ExitCode.NOT_READY
    assert "no ready file at" in out.stderr and "starting, or not running" in out.stderr
    ready.write_text(f"{server}/v1 tiny-phi3 12.5 K\n")
    target = from_ready_file(ready)
    assert not isinstance(target, str)
    assert (target.url, target.model, target.api_key_env) == (server, "tiny-phi3", "K")
    out = serve_probe("--ready-file", str(ready), env={"K": "s3cret"})
    assert out.returncode == 0, out.stderr
    ready.write_text(f"{server}/v1 other 12.5 K\n")
    out = serve_probe("--ready-file", str(ready), env={"K": "s3cret"})
    assert out.returncode == ExitCode.NOT_READY and "model 'other' not listed" in out.stderr


def test_the_cli_takes_the_ready_file_too(server: str, tmp_path: Path) -> None:
    # --profile sends the probe through the full CLI; the ready file's values come first
    ready = tmp_path / "ready"
    ready.write_text(f"{server}/v1 tiny-phi3 1.0 K\n")
    out = serve_probe("--ready-file", str(ready), "--profile", "tiny-cpu", env={"K": "s3cret"})
    assert out.returncode == 0 and "lists tiny-phi3" in out.stdout, out.stderr


def test_a_proxy_in_the_environment_is_not_used_for_loopback(server: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    out = serve_probe("--url", server, "--api-key-env", "K",
                      env={"K": "s3cret", "HTTP_PROXY": dead, "http_proxy": dead})  # fmt: skip
    assert out.returncode == 0, out.stderr
