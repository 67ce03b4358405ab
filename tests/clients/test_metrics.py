"""Benchmark figures match vLLM's definitions, checked against values computed by hand."""

from __future__ import annotations

import random

import pytest

from openai_server.clients import metrics, workload
from openai_server.clients.loadgen import _take
from openai_server.clients.metrics import RequestOutcome


def outcomes() -> list[RequestOutcome]:
    return [
        RequestOutcome(success=True, ttft=0.1, latency=0.5, itl=[0.1, 0.1, 0.2],
                       output_tokens=5, prompt_tokens=10, chunks=5),
        RequestOutcome(success=True, ttft=0.3, latency=0.3, output_tokens=1,
                       prompt_tokens=20, chunks=1),
        RequestOutcome(success=False, error="HTTP 500"),
    ]  # fmt: skip


def test_figures_match_hand_computed_values() -> None:
    r = metrics.calculate(outcomes(), duration=2.0)
    assert (r["completed"], r["failed"]) == (2, 1)
    assert (r["total_input_tokens"], r["total_output_tokens"]) == (30, 6)
    assert r["request_throughput"] == pytest.approx(1.0)
    assert r["output_throughput"] == pytest.approx(3.0)
    assert r["total_token_throughput"] == pytest.approx(18.0)
    assert r["request_goodput"] is None  # no SLO given, as vLLM reports it
    # TTFT [0.1, 0.3]
    assert r["mean_ttft_ms"] == pytest.approx(200)
    assert r["median_ttft_ms"] == pytest.approx(200)
    assert r["std_ttft_ms"] == pytest.approx(100)
    assert r["p99_ttft_ms"] == pytest.approx(298)  # 100 + 200 * 0.99
    # TPOT: only the 5-token request: (0.5 - 0.1) / (5 - 1)
    assert r["mean_tpot_ms"] == pytest.approx(100)
    assert r["p99_tpot_ms"] == pytest.approx(100)
    # ITL pooled [0.1, 0.1, 0.2]
    assert r["mean_itl_ms"] == pytest.approx(133.3333, abs=1e-3)
    assert r["median_itl_ms"] == pytest.approx(100)
    assert r["std_itl_ms"] == pytest.approx(47.1405, abs=1e-3)
    assert r["p99_itl_ms"] == pytest.approx(198)
    # E2E [0.5, 0.3]
    assert r["mean_e2el_ms"] == pytest.approx(400)
    assert r["p99_e2el_ms"] == pytest.approx(498)


@pytest.mark.parametrize(
    ("slo", "good"),
    [
        ({"ttft": 0.2, "tpot": 0.15}, 1),  # the second request's TTFT is 0.3
        ({"ttft": 0.3}, 2),  # equal to the SLO is within it (vLLM: slo >= value)
        ({"e2el": 0.3}, 1),
        ({"tpot": 0.05}, 1),  # a one-token request counts with TPOT 0
    ],
)
def test_goodput_counts_requests_within_every_slo(slo: dict[str, float], good: int) -> None:
    assert metrics.calculate(outcomes(), 2.0, slo)["request_goodput"] == pytest.approx(good / 2)


def test_output_tokens_fall_back_to_chunks_when_the_server_sends_no_usage() -> None:
    o = RequestOutcome(success=True, ttft=0.1, latency=0.4, itl=[0.1] * 3, chunks=4)
    r = metrics.calculate([o], 1.0)
    assert r["total_output_tokens"] == 4
    assert r["mean_tpot_ms"] == pytest.approx(100)


def test_no_successful_request_gives_zeros_not_errors() -> None:
    r = metrics.calculate([RequestOutcome(error="refused")], 1.0)
    assert r["completed"] == 0 and r["mean_ttft_ms"] == 0 and r["p99_itl_ms"] == 0


@pytest.mark.parametrize("seed", range(5))
def test_percentile_equals_numpy_linear(seed: int) -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(seed)
    values = [rng.expovariate(1.0) for _ in range(rng.randint(1, 50))]
    for p in (0, 25, 50, 90, 99, 100):
        assert metrics.percentile(values, p) == pytest.approx(float(np.percentile(values, p)))
    assert metrics.std(values) == pytest.approx(float(np.std(values)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ttft=2s,tpot=50ms", {"ttft": 2.0, "tpot": 0.05}),
        ("e2el=1.5s", {"e2el": 1.5}),
        ("tpot=50", {"tpot": 0.05}),  # a bare number is milliseconds, as in vLLM's --goodput
        (" TTFT = 500ms , ", {"ttft": 0.5}),
    ],
)
def test_slo_parsing(text: str, expected: dict[str, float]) -> None:
    assert metrics.parse_slo(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "names"),
    [("foo=1s", "'foo=1s'"), ("ttft", "'ttft'"), ("ttft=fast", "'fast'"), ("", "empty")],
)
def test_slo_parsing_refuses_with_the_bad_part(text: str, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        metrics.parse_slo(text)


def test_poisson_arrivals_are_seeded_and_scaled_to_the_rate() -> None:
    a = workload.arrival_offsets(200, rate=4.0, seed=7)
    assert a == workload.arrival_offsets(200, rate=4.0, seed=7)
    assert a != workload.arrival_offsets(200, rate=4.0, seed=8)
    assert a == sorted(a) and a[0] > 0
    assert a[-1] == pytest.approx(200 / 4.0)  # vLLM's normalisation: n requests in n/rate s
    gaps = [b - a for a, b in zip([0.0, *a], a, strict=False)]
    # exponential gaps: the standard deviation is close to the mean
    assert metrics.std(gaps) == pytest.approx(metrics.mean(gaps), rel=0.25)


def test_infinite_rate_sends_everything_at_once_and_zero_rate_is_refused() -> None:
    assert workload.arrival_offsets(3, float("inf"), 0) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="request-rate"):
        workload.arrival_offsets(3, 0, 0)


def test_sse_events_are_timed_like_vllms_client() -> None:
    out = RequestOutcome()
    role = b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}'
    token = b'data: {"choices":[{"delta":{"content":"hi"}}]}'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}'
    # the role-only chunk is a choice chunk: it sets TTFT, as in vLLM's benchmark client
    assert _take(role, out, now=1.5, start=1.0, last=1.0)
    assert _take(token, out, now=1.75, start=1.0, last=1.5)
    assert not _take(usage, out, now=1.8, start=1.0, last=1.75)
    assert not _take(b": ping", out, now=1.9, start=1.0, last=1.75)
    assert not _take(b"data: [DONE]", out, now=1.9, start=1.0, last=1.75)
    assert out.ttft == pytest.approx(0.5) and out.itl == [pytest.approx(0.25)]
    assert (out.chunks, out.output_tokens, out.prompt_tokens) == (2, 2, 9)
