"""`serve top` against a stand-in server (a real `python -m http.server` process serving files):
the exit codes of --once, and a server that goes away in the middle of the live view."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openai_server.errors import ExitCode
from tests.conftest import ROOT, SERVE, free_port
from tests.top.terminal import terminal
from tests.top.test_scrape import text

MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]})


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """An HTTP server answering GET with the files under its directory (/v1/models, /metrics)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(tmp_path),
         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield url, tmp_path, proc
    finally:
        proc.kill()
        proc.wait()


def serve_files(root: Path, models: bool, metrics: str | None) -> None:
    if models:
        (root / "v1").mkdir(exist_ok=True)
        (root / "v1" / "models").write_text(MODELS)
    if metrics is not None:
        (root / "metrics").write_text(metrics)


def once(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVE, "top", "--url", url, "--once", "--json", "--interval", "0.1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("models", "metrics", "code", "status", "says"),
    [
        (True, text(10, 20, running=1), ExitCode.OK, "ok", "ok"),
        (False, text(), ExitCode.NOT_READY, "not ready", "answered HTTP 404"),
        (True, None, ExitCode.NO_METRICS, "no metrics", "/metrics answered HTTP 404"),
        (True, "# TYPE up gauge\nup 1\n", ExitCode.NO_METRICS, "no metrics", "no vLLM metrics"),
    ],
)
def test_once_exit_code_says_what_is_wrong(
    standin: tuple[str, Path, subprocess.Popen[bytes]],
    models: bool, metrics: str | None, code: ExitCode, status: str, says: str,
) -> None:  # fmt: skip
    url, root, _ = standin
    serve_files(root, models, metrics)
    done = once(url)
    assert done.returncode == code, done.stderr
    snapshot = json.loads(done.stdout)
    assert snapshot["status"] == status and says in snapshot["reason"]
    if code != ExitCode.OK:
        assert done.stderr.startswith("serve: error: top:") and len(done.stderr.splitlines()) == 1


def test_once_against_nothing_is_not_reachable_exit_9() -> None:
    done = once(f"http://127.0.0.1:{free_port()}")
    assert done.returncode == ExitCode.CLIENT
    assert json.loads(done.stdout)["status"] == "unreachable"


def test_a_server_that_goes_away_mid_view_is_shown_unreachable_then_back(
    standin: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    url, root, proc = standin
    serve_files(root, True, text(10, 20, running=1))
    argv = [*SERVE, "top", "--url", url, "--interval", "0.3"]
    with terminal(argv, 80, 24) as term:
        term.wait_for("m ready", "run 1")
        proc.kill()
        screen = term.wait_for("unreachable", "is not reachable")
        assert "Traceback" not in screen
        port = url.rsplit(":", 1)[1]
        back = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root),
             port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            screen = term.wait_for("m ready", "  ok  ")
        finally:
            back.kill()
            back.wait()
    assert "Traceback" not in screen


def test_profile_gives_the_url(standin: tuple[str, Path, subprocess.Popen[bytes]]) -> None:
    url, root, _ = standin
    serve_files(root, True, text(10, 20, running=1))
    port = url.rsplit(":", 1)[1]
    done = subprocess.run([*SERVE, "top", "-p", "tiny-cpu", "--set", f"port={port}", "--once",
                           "--json", "--interval", "0.1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["url"] == url


def test_json_without_once_is_a_usage_error() -> None:
    done = subprocess.run([*SERVE, "top", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == ExitCode.USAGE and "add --once" in done.stderr
