"""`serve top` against the real vLLM (CPU) under a `serve bench` load, and drawn in a real terminal."""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Any

import httpx
import pytest

from openai_server.top.panels import PANELS
from tests.conftest import ROOT, SERVE, Launched
from tests.top.terminal import terminal

pytestmark = pytest.mark.e2e

# long enough for a slow `serve top` start; OUTPUT at tiny-cpu's cap (max_new_tokens: 128)
PROMPTS, INPUT, OUTPUT = 320, 64, 128


def top(url: str) -> dict[str, Any]:
    done = subprocess.run([*SERVE, "top", "--url", url, "--once", "--json", "--interval", "0.5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    snapshot: dict[str, Any] = json.loads(done.stdout)
    return snapshot


def vllm_counter(url: str, name: str) -> float:
    """vLLM's own counter, read from /metrics with a regular expression (not our parser)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(float(v) for v in re.findall(rf"^vllm:{name}_total\{{.*\}} (\S+)$", text, re.M))


def wait_queue(url: str, bench: subprocess.Popen[str]) -> None:
    """Until requests wait (the timed run began; the bench's lone test request never waits)."""
    while bench.poll() is None:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        if re.search(r"^vllm:num_requests_waiting\{.*\} [1-9]", text, re.M):
            return
        time.sleep(0.1)
    raise AssertionError(f"the bench ended before a request ran: {bench.communicate()}")


def test_snapshot_under_bench_load_has_rates_and_agrees_with_vllms_counters(
    tiny_server: Launched,
) -> None:
    url = tiny_server.base_url
    before = top(url)["models"][0]["totals"]
    # 32 in flight against max_num_seqs 8 (tiny-cpu): 8 run, the rest wait until the last 8
    bench = subprocess.Popen(
        [*SERVE, "bench", "--url", url, "--endpoint", "completions", "--json",
         "--num-prompts", str(PROMPTS), "--max-concurrency", "32",
         "--random-input-len", str(INPUT), "--random-output-len", str(OUTPUT)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_queue(url, bench)
        # a loaded machine may start `serve top` late in the run (the bench's tail: 2 running, none
        # waiting): take snapshots while the bench lasts, keep the busiest
        snapshots = [top(url)]
        while bench.poll() is None and not all(
            snapshots[-1]["models"][0]["requests"][k] for k in ("running", "waiting")
        ):
            snapshots.append(top(url))
        during = max(snapshots, key=lambda d: sum(d["models"][0]["requests"][k]
                                                  for k in ("running", "waiting")))  # fmt: skip
    finally:
        out, errors = bench.communicate(timeout=600)
    assert bench.returncode == 0, errors
    result = json.loads(out)

    assert during["status"] == "ok" and during["note"] is None
    (model,) = during["models"]
    assert model["model"] == "tiny-phi3" and model["state"] == "ready"
    assert model["requests"]["running"] > 0 and model["requests"]["waiting"] > 0, during
    assert model["kv_cache_usage"] > 0 and model["tokens_per_s"]["generation"] > 0
    assert model["latency_s"]["itl"]["p50"] <= model["latency_s"]["itl"]["p95"]
    assert during["gpus"]["reason"]  # this CPU host: the section says why no GPU is shown

    after = top(url)["models"][0]["totals"]
    # the bench's untimed test request is one more prompt of the same shape (clients/bench.py)
    assert after["prompt_tokens"] - before["prompt_tokens"] == result["total_input_tokens"] + INPUT
    assert after["generation_tokens"] - before["generation_tokens"] == (
        result["total_output_tokens"] + OUTPUT
    )
    assert after["prompt_tokens"] == vllm_counter(url, "prompt_tokens")
    assert after["generation_tokens"] == vllm_counter(url, "generation_tokens")


def test_every_vllm_metric_of_the_dashboard_is_served(tiny_server: Launched) -> None:
    text = httpx.get(f"{tiny_server.base_url}/metrics", timeout=30).text
    queried = set(re.findall(r"vllm:[a-z0-9_]+", " ".join(q for p in PANELS for _, q in p.queries)))
    missing = [n for n in sorted(queried) if not re.search(rf"^{n}(_bucket)?{{", text, re.M)]
    assert len(queried) >= 10 and missing == []


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 48)])
def test_live_view_draws_in_a_real_terminal_and_names_the_model(
    tiny_server: Launched, width: int, height: int
) -> None:
    argv = [*SERVE, "top", "--url", tiny_server.base_url, "--interval", "0.5"]
    with terminal(argv, width, height) as term:
        screen = term.wait_for("tiny-phi3", "tok/s", "p50/p95", "GPUs not visible")
        # the second frame has a window: the first frame's note is gone
        screen = term.wait_for("tiny-phi3", "TPOT")
        time.sleep(1.5)
        screen = term.screen()
    assert "Traceback" not in screen and "first scrape" not in screen
    lines = screen.splitlines()
    assert len(lines) <= height and max(len(line) for line in lines) <= width
