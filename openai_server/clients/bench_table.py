"""Tables of `serve bench` results: one run, a sweep, or two result files side by side.

Result dicts use vLLM's result-JSON keys, so `--compare` also reads files written by
`vllm bench serve --save-result`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from ..errors import ClientError

# (key, label) in display order; latency figures get mean/median/p99 rows.
HEADLINE = [
    ("completed", "successful requests"),
    ("failed", "failed requests"),
    ("duration", "duration (s)"),
    ("total_input_tokens", "total input tokens"),
    ("total_output_tokens", "total output tokens"),
    ("request_throughput", "request throughput (req/s)"),
    ("request_goodput", "request goodput (req/s)"),
    ("output_throughput", "output token throughput (tok/s)"),
    ("total_token_throughput", "total token throughput (tok/s)"),
]
LATENCIES = [("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2E latency")]
ROWS = HEADLINE + [
    (f"{stat}_{key}_ms", f"{stat} {label} (ms)")
    for key, label in LATENCIES
    for stat in ("mean", "median", "p99")
]
SWEEP_COLUMNS = [
    ("max_concurrency", "concurrency"),
    ("output_throughput", "output tok/s"),
    ("request_throughput", "req/s"),
    ("median_ttft_ms", "median TTFT ms"),
    ("mean_tpot_ms", "mean TPOT ms"),
    ("median_e2el_ms", "median E2E ms"),
    ("p99_e2el_ms", "p99 E2E ms"),
    ("failed", "failed"),
]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def headline(result: dict[str, Any]) -> str:
    return (
        f"{result.get('model')} at {result.get('url')}{result.get('endpoint', '')}: "
        f"{result.get('num_prompts')} prompts, concurrency {result.get('max_concurrency') or '∞'}, "
        f"rate {result.get('request_rate')}/s"
    )


def result_table(result: dict[str, Any]) -> Table:
    table = Table("figure", "value", box=None, pad_edge=False)
    for key, label in ROWS:
        if key == "request_goodput" and result.get(key) is None:
            continue
        table.add_row(label, fmt(result.get(key)))
    return table


def sweep_table(results: list[dict[str, Any]]) -> Table:
    table = Table(*(label for _, label in SWEEP_COLUMNS), box=None, pad_edge=False)
    for result in results:
        table.add_row(*(fmt(result.get(key)) for key, _ in SWEEP_COLUMNS))
    return table


def compare_table(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> Table:
    table = Table("figure", names[0], names[1], "b/a", box=None, pad_edge=False)
    for key, label in ROWS:
        left, right = a.get(key), b.get(key)
        if left is None and right is None:
            continue
        ratio = (
            f"{right / left:.3f}"
            if isinstance(left, int | float) and isinstance(right, int | float) and left
            else "-"
        )
        table.add_row(label, fmt(left), fmt(right), ratio)
    return table


def load_result(path: Path) -> dict[str, Any]:
    """A result file: `serve bench --json` output (one run) or vLLM's --save-result JSON."""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ClientError(f"--compare: cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ClientError(f"--compare: {path} is not JSON ({e.msg})") from None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict) or "output_throughput" not in data:
        raise ClientError(f"--compare: {path} is not the result of one benchmark run")
    return data
