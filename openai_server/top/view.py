"""A frame as terminal lines: fits 80x24, and a bigger terminal gets longer sparklines and more
of each GPU's processes. A pure function of the frame and the terminal's size (tested with rich's
recording console and in a real terminal, tests/top/)."""

from __future__ import annotations

import time

from rich.text import Text

from .gpus import GpuNow, GpuSection
from .scrape import Figures
from .watch import Frame, Row, Watch

BARS = "▁▂▃▄▅▆▇█"
GiB = 1024**3
STATE_STYLE = {"ready": "green", "sleeping": "yellow", "failed": "red", "starting": "cyan"}
LATENCIES = (("ttft", "TTFT"), ("itl", "TPOT"), ("e2e", "E2E"))


def sparkline(values: list[float], width: int, top: float | None = None) -> str:
    """The last `width` values as bars, scaled to `top` (default: their maximum)."""
    shown = values[-width:] if width > 0 else []
    high = top if top is not None else max(shown, default=0.0)
    if high <= 0:
        return BARS[0] * len(shown)
    return "".join(BARS[min(int(v / high * (len(BARS) - 1) + 0.5), len(BARS) - 1)] for v in shown)


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _ms(qs: dict[str, float] | None) -> str:
    if not qs:
        return "-"
    return f"{qs['p50'] * 1000:.0f}/{qs['p95'] * 1000:.0f}ms"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def model_lines(row: Row, watch: Watch, width: int, tall: bool) -> list[Text]:
    head = Text(f"{row.model} ", style="bold")
    head.append(row.state, style=STATE_STYLE.get(row.state, "magenta"))
    head.append(f"  up {_duration(row.uptime_s)}  restarts {row.restarts}")
    if row.cause:
        head.append(f"  {row.cause}", style="red")
    f = row.figures
    if f is None:
        return [head, Text("  no engine metrics from here", style="dim")]
    return [head, *figure_lines(f, watch, width, tall)]


def figure_lines(f: Figures, watch: Watch, width: int, tall: bool) -> list[Text]:
    spark = max(8, width - 62)
    kv = None if f.kv_usage is None else f.kv_usage * 100
    reqs = Text(f"  req run {f.running:.0f} wait {f.waiting:.0f} "
                f"preempt {_num(f.preempted, digits=0)}  KV {_num(kv, '%')} ")  # fmt: skip
    reqs.append(sparkline(watch.history(f.model, "kv"), spark, top=1.0), style="cyan")
    hit = None if f.prefix_hit_rate is None else f.prefix_hit_rate * 100
    reqs.append(f" hit {_num(hit, '%', 0)}")
    tps = f.tokens_per_s
    toks = Text(f"  tok/s prompt {_num(tps.get('prompt'))} gen {_num(tps.get('generation'))} ")
    toks.append(sparkline(watch.history(f.model, "generation_tps"), spark), style="green")
    lat = Text("  p50/p95 " + "  ".join(f"{label} {_ms(f.latency_s.get(key))}"
                                        for key, label in LATENCIES))  # fmt: skip
    done = ", ".join(f"{reason} {n:.0f}" for reason, n in sorted(f.finished.items())) or "none"
    lines = [reqs, toks, lat, Text(f"  finished {done}")]
    if tall:
        t = f.totals
        lines.append(Text(f"  since start: prompt {t['prompt_tokens']:.0f} tok, generated "
                          f"{t['generation_tokens']:.0f} tok, {t['finished']:.0f} requests, "
                          f"{t['preemptions']:.0f} preemptions", style="dim"))  # fmt: skip
    return lines


def gpu_lines(section: GpuSection, tall: bool) -> list[Text]:
    if not section.visible:
        return [Text(section.reason, style="dim")]
    lines = []
    for g in section.gpus:
        lines.append(Text(_gpu_line(g)))
        holders = g.holders if tall else g.holders[:1]
        for h in holders:
            used = "-" if h.used_bytes is None else f"{h.used_bytes / GiB:.1f}G"
            lines.append(Text(f"    pid {h.pid} {h.name} {used}", style="dim"))
        if len(g.holders) > len(holders):
            lines.append(Text(f"    (+{len(g.holders) - len(holders)} more)", style="dim"))
    return lines


def _gpu_line(g: GpuNow) -> str:
    mem = "-"
    if g.used_bytes is not None and g.total_bytes:
        mem = f"{g.used_bytes / GiB:.1f}/{g.total_bytes / GiB:.0f}G"
    power = f"{_num(g.power_w, digits=0)}/{_num(g.power_limit_w, 'W', 0)}"
    return (f"GPU{g.index} {g.name[:18]} util {_num(g.util_pct, '%', 0)} mem {mem} {power} "
            f"{_num(g.temp_c, 'C', 0)} SM {_num(g.sm_mhz, 'MHz', 0)}")  # fmt: skip


def render(frame: Frame, gpus: GpuSection, watch: Watch, width: int, height: int) -> Text:
    """Every line of the screen, cut to `height` (the last line then says how much is hidden)."""
    tall = height >= 40
    head = Text("serve top ", style="bold")
    head.append(frame.url)
    style = "green" if frame.status == "ok" else "bold red"
    head.append(f"  {frame.status}", style=style)
    head.append(f"  {time.strftime('%H:%M:%S')}" + ("  fleet" if frame.fleet else ""))
    lines = [head]
    if frame.status != "ok":
        lines.append(Text(frame.reason, style="red"))
    if frame.note:
        lines.append(Text(frame.note, style="yellow"))
    for row in frame.rows:
        lines += model_lines(row, watch, width, tall)
    lines += gpu_lines(gpus, tall)
    if len(lines) > height - 1:
        hidden = len(lines) - (height - 2)
        lines = [
            *lines[: height - 2],
            Text(f"... {hidden} more lines: a taller terminal shows them"),
        ]
    for line in lines:
        line.no_wrap, line.overflow = True, "ellipsis"
    return Text("\n").join(lines)
