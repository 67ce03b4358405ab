"""Faults the real vLLM cannot produce on demand, injected with a real fake server process
(tests/faults/fakeserver.py) under the real launcher. Each ends in a documented exit code, one line
naming the cause, no process of the server group left, and the port free."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from openai_server.errors import ExitCode
from tests.conftest import Spawned, assert_nothing_left, spawn
from tests.faults.conftest import expect_fault

FAKE = "tests/faults/fake.yaml"


def fake(tmp: Path, switches: str, *args: str) -> Spawned:
    return spawn(tmp, "--no-check", *args, profile=FAKE, env={"FAKE_VLLM": switches})


def interrupt(s: Spawned) -> None:
    s.proc.send_signal(signal.SIGINT)
    assert s.finish(60) == ExitCode.INTERRUPTED
    assert_nothing_left(s.output(), s.port)


def test_crash_before_ready_exits_at_once_with_its_last_lines(tmp_path: Path) -> None:
    s = fake(tmp_path, "--ready-after 30 --exit-before-ready 3")
    expect_fault(s, "crash before ready (fake, exit 3)", ExitCode.START_FAILED,
                 "exited with code 3 before it was ready")  # fmt: skip


def test_engine_failing_to_start_is_stopped_at_once_though_its_processes_stay(
    tmp_path: Path,
) -> None:
    # vLLM 0.33 on two GPUs: a worker failed in memory profiling, "EngineCore failed to start."
    # and the processes stayed alive; the launcher printed nothing for 282 s (hardening issue).
    s = fake(tmp_path, "--engine-fails-to-start --spawn-engine")
    t0 = time.monotonic()
    line = expect_fault(s, "engine fails to start, processes alive (fake)", ExitCode.ENGINE_DIED,
                        "the engine core (EngineCore) failed to start")  # fmt: skip
    assert time.monotonic() - t0 < 20, "not stopped at once"
    assert "AssertionError: Error in memory profiling" in line  # the root cause, the worker's


def test_engine_exiting_0_after_ready_is_a_failure(tmp_path: Path) -> None:
    s = fake(tmp_path, "--exit-after-ready 1:0")
    s.wait_ready(30)
    expect_fault(s, "server exits 0 1 s after ready (fake)", ExitCode.DIED_AFTER_READY,
                 "exited with code 0 after it was ready")  # fmt: skip


def test_health_503_after_ready_is_engine_death(tmp_path: Path) -> None:
    s = fake(tmp_path, "--health-503-after 1", "--health-interval", "0.5")
    s.wait_ready(30)
    expect_fault(s, "/health 503 1 s after ready (fake, checked every 0.5 s)",
                 ExitCode.DIED_AFTER_READY, "503")  # fmt: skip


def test_hang_with_health_200_is_caught_by_the_deep_probe(tmp_path: Path) -> None:
    s = fake(tmp_path, "--hang-after-ready 1",
             "--deep-probe-interval", "1", "--deep-probe-timeout", "2")  # fmt: skip
    s.wait_ready(30)
    expect_fault(s, "engine hang 1 s after ready, /health 200 (deep probe 1 s / 2 s)",
                 ExitCode.ENGINE_HUNG, "engine hung")  # fmt: skip


def test_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    s = fake(tmp_path, "--ignore-sigterm --spawn-engine --engine-ignores-sigterm", "--grace", "2")
    s.wait_ready(30)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    expect_fault(s, "child ignores SIGTERM (fake, grace 2 s)", ExitCode.TERMINATED,
                 "stopped by SIGTERM")  # fmt: skip
    assert 2 <= time.monotonic() - t0 < 10


def test_ctrl_c_is_a_stop_not_an_error(tmp_path: Path) -> None:
    # make run / serve launch in a terminal: Ctrl-C is the way to stop it, not a failure
    s = fake(tmp_path, "")
    s.wait_ready(30)
    s.proc.send_signal(signal.SIGINT)
    line = expect_fault(s, "Ctrl-C after ready (fake)", ExitCode.INTERRUPTED, "stopped by SIGINT")
    assert line == "serve: stopped by SIGINT; the server process group is gone"


def test_restart_loop_gives_up_at_its_limit(tmp_path: Path) -> None:
    s = fake(tmp_path, "--exit-before-ready 1", "--set", "restart=on-failure",
             "--restart-limit", "2")  # fmt: skip
    expect_fault(s, "restart loop hits its limit (2 restarts, backoff 1 s, 2 s)",
                 ExitCode.START_FAILED, "gave up after 2 restarts", timeout=120)  # fmt: skip
    assert re.findall(r"restarting in (\d+) s", s.output()) == ["1", "2"]


def test_restart_recovers_after_a_death(tmp_path: Path) -> None:
    # the fake exits 1 s after each ready: with restart=always the launcher brings it back
    s = fake(tmp_path, "--exit-after-ready 1:1", "--set", "restart=always")
    s.wait_for("restarting in 1 s", 30)
    s.wait_for("restarting in 2 s", 30)
    assert s.output().count("ready: http") >= 2
    interrupt(s)


def test_silent_idle_start_is_declared_hung(tmp_path: Path) -> None:
    s = fake(tmp_path, "--silent-idle", "--stall-timeout", "4")
    expect_fault(s, "start-up hung: silent and idle (stall timeout 4 s)",
                 ExitCode.STARTUP_HUNG, "start-up hung")  # fmt: skip


def test_silent_but_busy_start_is_not_killed(tmp_path: Path) -> None:
    # like a cold H100 start compiling kernels with no log line for 124 s (docs/vllm-facts.md)
    s = fake(tmp_path, "--silent-busy 8", "--stall-timeout", "4")
    s.wait_ready(60)
    interrupt(s)


def test_ready_timeout_kills_the_group(tmp_path: Path) -> None:
    s = fake(tmp_path, "--ready-after 60 --spawn-engine", "--ready-timeout", "3")
    expect_fault(s, "ready timeout (3 s, measured from launch)", ExitCode.READY_TIMEOUT,
                 "not ready after 3 s")  # fmt: skip


def test_corrupt_profile_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\nmax_num_seqs: [1\n")
    s = spawn(tmp_path, profile=str(bad))
    expect_fault(s, "corrupt profile", ExitCode.PROFILE, "bad.yaml:3", timeout=30)
    assert "started the server" not in s.output()


def test_json_log_format_emits_structured_phase_events(tmp_path: Path) -> None:
    s = fake(tmp_path, "", "--log-format", "json")
    s.wait_ready(30)
    interrupt(s)
    events = [json.loads(ln) for ln in s.output().splitlines() if ln.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["command", "started"]
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases[0] == "start" and phases[-1] == "ready" and "kv_cache" in phases
    kv = next(e for e in events if e.get("phase") == "kv_cache")
    assert kv["tokens"] > 0 and kv["since_start"] >= 0
    ready = next(e for e in events if e["event"] == "ready")
    assert ready["model"] == "fake-model" and ready["seconds"] > 0
    assert all("elapsed" in e and "message" in e for e in events if e["event"] != "log")


def test_raw_output_only_with_verbose(tmp_path: Path) -> None:
    quiet = fake(tmp_path, "")
    quiet.wait_ready(30)
    interrupt(quiet)
    assert "Starting vLLM server on" not in quiet.output()
    loud = fake(tmp_path, "", "--verbose")
    loud.wait_ready(30)
    interrupt(loud)
    assert "Starting vLLM server on" in loud.output()
