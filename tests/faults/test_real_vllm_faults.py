"""Faults the real vLLM (CPU build) produces on demand: each ends in a documented non-zero exit,
one line naming the cause, no process of the server group left, and the port free."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from openai_server.errors import ExitCode
from tests.conftest import assert_nothing_left, requires_vllm, server_groups, spawn
from tests.faults.conftest import expect_fault, record

pytestmark = [pytest.mark.e2e, requires_vllm]


def test_unrecognized_flag_names_the_profile_key(tmp_path: Path) -> None:
    s = spawn(tmp_path, "--no-check", "--set", "extra_args=[--no-such-flag, '1']")
    line = expect_fault(s, "bad flag (extra_args --no-such-flag)",
                        ExitCode.UNRECOGNIZED_ARGUMENT, "--no-such-flag")  # fmt: skip
    assert "extra_args" in line


def test_port_taken_is_named(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        s = spawn(tmp_path, "--no-check", port=port)
        # the port stays ours: only the server group must be gone
        expect_fault(s, "port taken (real vLLM, --no-check)", ExitCode.PORT_IN_USE, str(port),
                     port=False)  # fmt: skip


def test_port_taken_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        s = spawn(tmp_path, port=blocker.getsockname()[1])
        expect_fault(s, "port taken (preflight)", ExitCode.REFUSED, "port", port=False)
        assert "started the server" not in s.output()


def test_missing_model_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    s = spawn(tmp_path, "--no-check", "--set", f"model={missing}", env={"HF_HUB_OFFLINE": "1"})
    expect_fault(s, "model not found (offline)", ExitCode.MODEL_NOT_FOUND, "no-such-model")


def test_kv_cache_too_small_suggests_vllms_own_max_model_len(tmp_path: Path) -> None:
    s = spawn(
        tmp_path, "--no-check", "--set", "max_model_len=600000",
        "--set", "env.VLLM_ALLOW_LONG_MAX_MODEL_LEN=1",
    )  # fmt: skip
    line = expect_fault(s, "KV cache too small (max_model_len 600000)",
                        ExitCode.KV_CACHE_TOO_SMALL, "max_model_len", timeout=300)  # fmt: skip
    assert re.search(r"max_model_len: \d+", line), line


def test_sigterm_before_ready_stops_the_group(tmp_path: Path) -> None:
    s = spawn(tmp_path)
    s.wait_for("started the server", timeout=60)
    time.sleep(8)  # inside vLLM's start: engine processes are being created
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    expect_fault(s, "SIGTERM before ready (8 s into the start)", ExitCode.TERMINATED,
                 "stopped by SIGTERM")  # fmt: skip
    # no request to drain before ready: the short start-up grace applies, not --grace (30 s)
    assert time.monotonic() - t0 < 15


def test_engine_core_killed_after_ready_is_a_failure_not_exit_0(tmp_path: Path) -> None:
    s = spawn(tmp_path)
    s.wait_ready()
    pgid = server_groups(s.output())[-1]
    engine = next(
        p for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and p.info["cmdline"][0].startswith("VLLM::EngineCore")
        and _pgid(p.pid) == pgid
    )  # fmt: skip
    engine.kill()
    expect_fault(s, "engine core SIGKILLed after ready (API server alive)", ExitCode.ENGINE_DIED,
                 "EngineCore")  # fmt: skip


def test_launcher_sigkilled_after_ready_leaves_nothing(tmp_path: Path) -> None:
    s = spawn(tmp_path, "--grace", "10")
    s.wait_ready()
    out = s.output()
    t0 = time.monotonic()
    s.proc.kill()
    s.finish()
    assert_nothing_left(out, s.port, timeout=30)
    record("launcher SIGKILLed after ready (guardian cleanup)", time.monotonic() - t0, -9)


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1
