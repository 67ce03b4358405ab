"""The PNG of a `serve bench --sweep`: output throughput against latency, one point per concurrency.

The knee of that curve is the operating point people look for: past it, more concurrency buys
latency and no throughput. matplotlib is imported here only (it is slow, and optional: `plot`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ClientError


def sweep_png(results: list[dict[str, Any]], path: Path) -> Path:
    """Write the plot to `path` and return it."""
    try:
        import matplotlib
    except ImportError:
        raise ClientError(
            "--sweep: matplotlib is needed for the plot: pip install 'serve[plot]'"
        ) from None
    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    levels = [r["max_concurrency"] for r in results]
    throughput = [r["output_throughput"] for r in results]
    # Mean TPOT, not median: on a busy host tokens can arrive in bursts, and the median of a
    # bursty request set is 0 while the mean still shows the time per token.
    panels = [("mean_tpot_ms", "mean TPOT (ms)"), ("median_e2el_ms", "median E2E latency (ms)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 4.5))
    for ax, (key, label) in zip(axes, panels, strict=True):
        latency = [r[key] for r in results]
        ax.plot(latency, throughput, marker="o")
        for x, y, level in zip(latency, throughput, levels, strict=True):
            ax.annotate(f"c={level}", (x, y), textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel(label)
        ax.set_ylabel("output throughput (tokens/s)")
        ax.grid(True, alpha=0.3)
    first = results[0]
    fig.suptitle(
        f"{first['model']} at {first['url']}: {first['num_prompts']} prompts per level, "
        f"input {first.get('random_input_len') or first['dataset']}, "
        f"output {first['random_output_len']} tokens"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
