"""Benchmark figures, defined exactly as vLLM's `vllm bench serve` defines them.

Source of the definitions: `calculate_metrics` in vllm/benchmarks/serve.py (vLLM 0.32):
- TTFT: request sent -> first streamed chunk that carries a choice.
- ITL: the gaps between consecutive such chunks (every gap of every request, pooled).
- E2E latency: request sent -> last chunk that carries a choice (the usage-only chunk is not one).
- TPOT: per request, (latency - ttft) / (output_tokens - 1), only for requests with > 1 token.
- output tokens: the server's `usage.completion_tokens` (the chunk count when it sends none).
- throughputs: totals over successful requests / the wall time of the whole run.
- goodput: successful requests meeting every SLO / duration; for goodput a one-token request
  counts with TPOT 0.
- mean, median, std, p99 over the pooled values; an empty pool gives 0 (vLLM's `np.mean(x or 0)`);
  percentiles interpolate linearly between closest ranks (numpy's default method).

Pure functions on plain data: no I/O, no clock, no numpy (so they are cheap to import and test).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SLO_KEYS = ("ttft", "tpot", "e2el")


@dataclass
class RequestOutcome:
    """What one benchmark request measured (times in seconds, from time.perf_counter)."""

    success: bool = False
    start_time: float = 0.0
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0  # from the server's usage; 0 when it sent none
    prompt_tokens: int = 0  # from the server's usage, else the prompt's own length
    error: str = ""
    chunks: int = 0  # streamed chunks that carried a choice


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def std(values: Sequence[float]) -> float:
    """Population standard deviation (numpy's np.std, ddof=0)."""
    if not values:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def percentile(values: Sequence[float], p: float) -> float:
    """numpy's np.percentile(values, p) with the default 'linear' method; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(name: str, values: Sequence[float]) -> dict[str, float]:
    """mean/median/std/p99 of `values` (seconds) as milliseconds, keyed like vLLM's result JSON."""
    return {
        f"mean_{name}_ms": mean(values) * 1000,
        f"median_{name}_ms": percentile(values, 50) * 1000,
        f"std_{name}_ms": std(values) * 1000,
        f"p99_{name}_ms": percentile(values, 99) * 1000,
    }


def calculate(
    outcomes: Sequence[RequestOutcome], duration: float, slo: dict[str, float] | None = None
) -> dict[str, Any]:
    """Every figure of a run, keyed as in vLLM's result JSON (`output_throughput` = tok/s)."""
    ttfts: list[float] = []
    tpots: list[float] = []
    all_tpots: list[float] = []
    itls: list[float] = []
    e2els: list[float] = []
    total_input = total_output = completed = 0
    for o in outcomes:
        if not o.success:
            continue
        output_len = o.output_tokens or o.chunks or 1
        total_output += output_len
        total_input += o.prompt_tokens
        tpot = 0.0
        if output_len > 1:
            tpot = (o.latency - o.ttft) / (output_len - 1)
            tpots.append(tpot)
        all_tpots.append(tpot)
        itls.extend(o.itl)
        ttfts.append(o.ttft)
        e2els.append(o.latency)
        completed += 1
    good = count_good(ttfts, all_tpots, e2els, slo or {})
    result: dict[str, Any] = {
        "duration": duration,
        "completed": completed,
        "failed": len(outcomes) - completed,
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": completed / duration,
        "request_goodput": good / duration if slo else None,
        "output_throughput": total_output / duration,
        "total_token_throughput": (total_input + total_output) / duration,
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        result.update(summary(name, values))
    return result


def count_good(
    ttfts: Sequence[float],
    tpots: Sequence[float],
    e2els: Sequence[float],
    slo: dict[str, float],
) -> int:
    """Requests within every SLO (seconds); a value equal to its SLO is within it (as in vLLM)."""
    if not slo:
        return 0
    columns = {"ttft": ttfts, "tpot": tpots, "e2el": e2els}
    chosen = [(columns[k], limit) for k, limit in slo.items()]
    return sum(all(values[i] <= limit for values, limit in chosen) for i in range(len(ttfts)))


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*$")


def parse_slo(text: str) -> dict[str, float]:
    """`ttft=2s,tpot=50ms` -> {"ttft": 2.0, "tpot": 0.05} (seconds; a bare number is ms as in
    vLLM's --goodput). Raises ValueError naming the offending part."""
    slo: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in SLO_KEYS:
            raise ValueError(
                f"--slo: {part.strip()!r} is not KEY=VALUE with KEY one of "
                f"{', '.join(SLO_KEYS)} (e.g. ttft=2s,tpot=50ms)"
            )
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"--slo: {key}: {value.strip()!r} is not a duration like 2s or 50ms")
        number = float(match.group(1))
        slo[key] = number if match.group(2) == "s" else number / 1000
    if not slo:
        raise ValueError("--slo: empty; expected e.g. ttft=2s,tpot=50ms")
    return slo
