"""`serve smoke`, `serve bench` and `serve chat` against the real tiny vLLM server."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from openai_server.errors import ExitCode
from tests.conftest import ROOT, SERVE, Launched

pytestmark = pytest.mark.e2e


def serve(
    *args: str, stdin: str | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def test_smoke_passes_and_reports_ttft(tiny_server: Launched) -> None:
    done = serve("smoke", "--url", tiny_server.base_url, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["model"] == "tiny-phi3"
    assert report["content_chunks"] >= 2 and report["completion_tokens"] >= 2
    assert report["finish_reason"] in ("length", "stop")
    assert 0 < report["ttft_ms"] < 30_000 and report["tokens_per_s"] > 0


def test_smoke_accepts_the_v1_url_and_prints_one_line(tiny_server: Launched) -> None:
    done = serve("smoke", "--url", tiny_server.base_url + "/v1", "--model", "tiny-phi3")
    assert done.returncode == 0, done.stderr
    assert re.match(
        r"ok: tiny-phi3 at http://\S+: \d+ tokens in \d+ chunks, TTFT \d+ ms", done.stdout
    )


def test_smoke_for_a_wrong_model_exits_9_naming_the_listed_models(tiny_server: Launched) -> None:
    done = serve("smoke", "--url", tiny_server.base_url, "--model", "phi3-typo")
    assert done.returncode == ExitCode.CLIENT
    assert done.stderr.strip().splitlines() == [
        "serve: error: smoke: model missing: 'phi3-typo' is not served (listed: tiny-phi3)"
    ]


def test_bench_json_small_run_has_sane_figures(tiny_server: Launched) -> None:
    done = serve("bench", "--url", tiny_server.base_url, "--json", "--num-prompts", "8",
                 "--max-concurrency", "2", "--random-input-len", "32", "--random-output-len", "16",
                 "--slo", "ttft=30s,tpot=5s")  # fmt: skip
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert (r["completed"], r["failed"], r["total_output_tokens"]) == (8, 0, 8 * 16)
    # the chat template wraps each 32-token prompt in a few tokens of its own
    assert 8 * 32 < r["total_input_tokens"] < 8 * 48
    assert r["output_throughput"] == pytest.approx(r["total_output_tokens"] / r["duration"])
    assert r["request_goodput"] == pytest.approx(r["request_throughput"])  # generous SLOs
    # On a loaded machine a whole answer can arrive in one network read (TPOT and ITL 0 then)
    for name in ("ttft", "tpot", "itl", "e2el"):
        assert 0 <= r[f"median_{name}_ms"] <= r[f"p99_{name}_ms"] + 1e-9, name
    assert r["mean_ttft_ms"] > 0 and r["mean_e2el_ms"] >= r["mean_ttft_ms"]
    assert r["endpoint"] == "/v1/chat/completions" and r["max_concurrency"] == 2


def test_bench_random_prompts_have_the_exact_token_count(tiny_server: Launched) -> None:
    # /v1/completions adds no template, so the server's prompt count is the prompt itself
    done = serve("bench", "--url", tiny_server.base_url, "--json", "--endpoint", "completions",
                 "--num-prompts", "6", "--random-input-len", "64", "--random-output-len", "4",
                 "--request-rate", "50", "--seed", "3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert (r["total_input_tokens"], r["total_output_tokens"]) == (6 * 64, 6 * 4)


def test_bench_dataset_file(tiny_server: Launched, tmp_path: Path) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "hello there", "max_tokens": 5}\n'
                    '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}\n')  # fmt: skip
    done = serve(
        "bench",
        "--url",
        tiny_server.base_url,
        "--json",
        "--dataset",
        str(data),
        "--num-prompts",
        "4",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total_output_tokens"] == 5 + 7 + 5 + 7


def test_sweep_writes_a_png_and_one_result_per_level(tiny_server: Launched, tmp_path: Path) -> None:
    png = tmp_path / "plots" / "sweep.png"
    done = serve("bench", "--url", tiny_server.base_url, "--json", "--sweep", "1,2",
                 "--num-prompts", "4", "--random-input-len", "16", "--random-output-len", "8",
                 "--plot", str(png))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [r["max_concurrency"] for r in report["sweep"]] == [1, 2]
    assert report["plot"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_bench_table_is_printed_without_json(tiny_server: Launched) -> None:
    done = serve("bench", "--url", tiny_server.base_url, "--num-prompts", "2",
                 "--random-input-len", "8", "--random-output-len", "4")  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = dict(re.findall(r"^\s*(\S.*?\S)\s{2,}(\S+)\s*$", done.stdout, flags=re.M))
    assert rows["successful requests"] == "2" and rows["failed requests"] == "0", done.stdout
    assert rows["total output tokens"] == "8", done.stdout  # 2 prompts x 4 tokens (ignore_eos)
    for label in ("output token throughput (tok/s)", "median TTFT (ms)"):
        assert float(rows[label].replace(",", "")) > 0, (label, done.stdout)
    # TPOT is 0 where vLLM sent all 4 tokens in one chunk (its reader lagging on a loaded machine)
    assert float(rows["p99 TPOT (ms)"].replace(",", "")) >= 0, done.stdout


def test_chat_with_piped_stdin_answers_and_quits(tiny_server: Launched) -> None:
    done = serve("chat", "--url", tiny_server.base_url, "--max-tokens", "8",
                 "--system", "be brief", stdin="hello\n/reset\nagain\n/exit\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "chatting with tiny-phi3" in done.stdout
    assert "(history cleared)" in done.stdout
    answers = [ln for ln in done.stdout.split("> ") if ln.strip() and "chatting" not in ln]
    assert len(answers) >= 2, done.stdout


class Pty:
    """`serve chat` on a real terminal, so Ctrl-C and Ctrl-D go through the line discipline."""

    def __init__(self, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(ROOT)
            os.execv(SERVE[0], [*SERVE, *args])
        self.seen = b""
        self.mark = 0

    def expect(self, text: bytes, timeout: float = 60) -> None:
        """Wait for `text` in what the terminal showed since the last send()."""
        deadline = time.monotonic() + timeout
        while text not in self.seen[self.mark :]:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not seen: {self.seen[-2000:]!r}"
            self.read(left)

    def read(self, timeout: float) -> None:
        if select.select([self.fd], [], [], timeout)[0]:
            with contextlib.suppress(OSError):  # EIO: the child closed the terminal
                self.seen += os.read(self.fd, 4096)

    def send(self, data: bytes) -> None:
        self.mark = len(self.seen)
        os.write(self.fd, data)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        raise AssertionError(f"serve chat did not exit: {self.seen[-2000:]!r}")


def running_requests(base_url: str) -> float:
    text = httpx.get(base_url + "/metrics", timeout=10).text
    return sum(
        float(m) for m in re.findall(r"^vllm:num_requests_running\{[^}]*\} (\S+)$", text, re.M)
    )


def finished_requests(base_url: str) -> float:
    """Requests that ran to their end (a stop or the length limit); an aborted one is not counted."""
    text = httpx.get(base_url + "/metrics", timeout=10).text
    pattern = r'^vllm:request_success_total\{[^}]*finished_reason="(\w+)"[^}]*\} (\S+)$'
    return sum(float(n) for reason, n in re.findall(pattern, text, re.M) if reason != "abort")


def test_chat_ctrl_c_stops_the_answer_not_the_session(tiny_server: Launched) -> None:
    # tiny-cpu's sampling.max_tokens (128) reaches vLLM as max_new_tokens, a server-wide cap that
    # --max-tokens cannot raise: an answer lasts under a second, and on a busy host it can end
    # before the Ctrl-C reaches it. Such a try shows nothing and the question is asked again; a
    # Ctrl-C that reaches the answer and does not stop it fails at once.
    url = tiny_server.base_url
    chat = Pty("chat", "--url", url, "--temperature", "0")  # greedy: runs to the cap, not to EOS
    prompt = b"\n> "  # input()'s prompt at the start of a line
    question = b"tell me a long story"
    chat.expect(b"> ")
    for _ in range(10):
        finished = finished_requests(url)
        chat.send(question + b"\r")
        deadline = time.monotonic() + 60
        while not chat.seen[chat.mark :].partition(question + b"\r\n")[2]:  # the answer began
            assert time.monotonic() < deadline, f"no answer: {chat.seen!r}"
            chat.read(0.2)
        if prompt in chat.seen[chat.mark :]:
            continue  # the answer ended before Ctrl-C could be sent
        chat.send(b"\x03")  # Ctrl-C: SIGINT to the foreground process group
        chat.expect(prompt, timeout=10)
        after = chat.seen[chat.mark :].partition(b"^C")[2]
        if after.startswith(b"\r\n> "):
            continue  # the answer had ended: the Ctrl-C dropped the empty line at the prompt
        assert b" [stopped]\r\n> " in after, f"Ctrl-C did not stop the answer: {after[-2000:]!r}"
        stopped_at = time.monotonic()
        while running_requests(url) > 0:
            assert time.monotonic() - stopped_at < 2.5, (
                "the server kept generating the stopped answer"
            )
            time.sleep(0.1)
        if finished_requests(url) == finished:
            break  # the closed stream aborted the request
        # else the server had generated the whole answer before the stream was closed
    else:
        raise AssertionError(
            "in 10 tries no Ctrl-C stopped an answer the server was still generating"
        )
    chat.send(b"and now?\r")  # the session goes on
    chat.expect(prompt, timeout=120)
    assert len(chat.seen) > chat.mark + 40
    chat.send(b"\x04")  # Ctrl-D at the prompt ends the session cleanly
    assert chat.wait() == 0
