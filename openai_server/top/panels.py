"""`serve top`'s figures as PromQL, for dashboards that show the same panels (serve deploy
--monitoring writes them as a Grafana dashboard).

Each query is the Prometheus form of what scrape.py computes from two scrapes: a counter's
`rate()` over the window, `histogram_quantile()` of the buckets' rates (the same interpolation as
scrape.quantile), gauges as read. The GPU panels read NVIDIA's dcgm-exporter (its default
counters, dcgm-exporter etc/default-counters.csv), the cluster's counterpart of NVML here.
"""

from __future__ import annotations

from dataclasses import dataclass

W = "[$__rate_interval]"  # Grafana's window for rate(): at least four scrape intervals


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str  # Grafana's unit id
    queries: tuple[tuple[str, str], ...]  # (legend, PromQL)
    shown_as: str  # where `serve top` shows the same figure


def _rate(metric: str, by: str = "model_name") -> str:
    return f"sum by ({by}) (rate({metric}{W}))"


def _quantiles(histogram: str) -> tuple[tuple[str, str], ...]:
    buckets = f"sum by (le, model_name) (rate({histogram}_bucket{W}))"
    return tuple(
        (f"{{{{model_name}}}} p{q}", f"histogram_quantile(0.{q}, {buckets})") for q in (50, 95)
    )


PANELS = (
    Panel("Requests running / waiting", "short", (
        ("{{model_name}} running", "sum by (model_name) (vllm:num_requests_running)"),
        ("{{model_name}} waiting", "sum by (model_name) (vllm:num_requests_waiting)"),
    ), "req run / wait"),
    Panel("Preemptions per second", "short", (
        ("{{model_name}}", _rate("vllm:num_preemptions_total")),
    ), "req preempt"),
    Panel("KV-cache use", "percentunit", (
        ("{{model_name}}", "avg by (model_name) (vllm:kv_cache_usage_perc)"),
    ), "KV"),
    Panel("Prefix-cache hit rate", "percentunit", (
        ("{{model_name}}", f"{_rate('vllm:prefix_cache_hits_total')} / "
                           f"{_rate('vllm:prefix_cache_queries_total')}"),
    ), "hit"),
    Panel("Tokens per second", "short", (
        ("{{model_name}} prompt", _rate("vllm:prompt_tokens_total")),
        ("{{model_name}} generation", _rate("vllm:generation_tokens_total")),
    ), "tok/s"),
    Panel("Time to first token", "s", _quantiles("vllm:time_to_first_token_seconds"), "TTFT"),
    Panel("Time per output token (inter-token latency)", "s",
          _quantiles("vllm:inter_token_latency_seconds"), "TPOT"),
    Panel("End-to-end request latency", "s", _quantiles("vllm:e2e_request_latency_seconds"),
          "E2E"),
    Panel("Finished requests per second by reason", "reqps", (
        ("{{model_name}} {{finished_reason}}",
         _rate("vllm:request_success_total", "model_name, finished_reason")),
    ), "finished"),
    Panel("GPU utilization", "percent", (("GPU {{gpu}}", "DCGM_FI_DEV_GPU_UTIL"),), "GPU util"),
    Panel("GPU memory used", "mbytes", (("GPU {{gpu}}", "DCGM_FI_DEV_FB_USED"),), "GPU mem"),
    Panel("GPU power", "watt", (("GPU {{gpu}}", "DCGM_FI_DEV_POWER_USAGE"),), "GPU power"),
    Panel("GPU temperature", "celsius", (("GPU {{gpu}}", "DCGM_FI_DEV_GPU_TEMP"),), "GPU C"),
    Panel("GPU SM clock", "rotmhz", (("GPU {{gpu}}", "DCGM_FI_DEV_SM_CLOCK"),), "GPU SM"),
)  # fmt: skip
