"""Polls over time -> frames: each frame's window is the time since the previous poll.

What spans frames lives here: the previous scrape of each metrics source (the window's start),
the restarts seen, and short histories for the sparklines. Pure: polls and clock values in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .fetch import Poll
from .scrape import Figures, Scrape, figures

HISTORY = 120  # points kept for the sparklines (the view shows as many as fit)
FIRST_FRAME = "first scrape: rates and percentiles appear from the second one (one interval)"


@dataclass(frozen=True)
class Row:
    """One model: the fleet's view of it (if any) and its engine's figures (if scraped)."""

    model: str
    state: str
    figures: Figures | None
    uptime_s: float | None = None
    restarts: int = 0
    cause: str | None = None

    def as_json(self) -> dict[str, Any]:
        shown = self.figures.as_json() if self.figures else {"model": self.model}
        return {**shown, "state": self.state, "uptime_s": _round(self.uptime_s),
                "restarts": self.restarts, "cause": self.cause}  # fmt: skip


@dataclass(frozen=True)
class Frame:
    url: str
    status: str  # ok | unreachable | not ready | no metrics
    reason: str
    rows: tuple[Row, ...] = ()
    fleet: bool = False
    note: str | None = None  # FIRST_FRAME until there is a window

    def as_json(self) -> dict[str, Any]:
        return {"url": self.url, "status": self.status, "reason": self.reason,
                "fleet": self.fleet, "note": self.note,
                "models": [r.as_json() for r in self.rows]}  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class Watch:
    url: str
    before: dict[str, Scrape] = field(default_factory=dict)  # metrics URL -> previous scrape
    restarts: dict[str, int] = field(default_factory=dict)  # model -> restarts seen here
    spark: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def frame(self, p: Poll, now: float) -> Frame:
        """The frame for poll `p`, taken at `now` (epoch seconds, for uptimes)."""
        if p.status != "ok":
            return Frame(self.url, p.status, p.reason)
        rows: list[Row] = []
        windowed = False
        for source, scrape in p.scrapes.items():
            before = self.before.get(source)
            for model in scrape.models:
                f = figures(model, before, scrape)
                windowed = windowed or f.window_s is not None
                self.restarts[model] = self.restarts.get(model, 0) + int(f.reset)
                uptime = now - scrape.started if scrape.started else None
                rows.append(Row(model, f.state, f, uptime, self.restarts[model]))
                self._remember(f)
        self.before = dict(p.scrapes)
        if p.fleet is not None:
            rows = self._fleet_rows(p.fleet, {r.model: r for r in rows}, now)
        note = None if windowed else FIRST_FRAME
        return Frame(self.url, "ok", "ok", tuple(rows), p.fleet is not None, note)

    def _fleet_rows(
        self, fleet: dict[str, dict[str, Any]], scraped: dict[str, Row], now: float
    ) -> list[Row]:
        """Every model of the fleet with its state; figures where its engine was scraped."""
        rows = []
        for model, s in fleet.items():
            state = str(s.get("state", "?"))
            f = scraped[model].figures if model in scraped else None
            up = now - float(s["since"]) if state == "ready" and s.get("since") else None
            restarts = max(int(s.get("loads", 0)) - 1, 0)
            rows.append(Row(model, state, f, up, restarts, s.get("cause")))
        return rows

    def _remember(self, f: Figures) -> None:
        values = {"generation_tps": f.tokens_per_s.get("generation"), "kv": f.kv_usage}
        for key, value in values.items():
            if value is not None:
                self.spark.setdefault((f.model, key), deque(maxlen=HISTORY)).append(value)

    def history(self, model: str, key: str) -> list[float]:
        return list(self.spark.get((model, key), ()))
