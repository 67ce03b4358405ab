"""Faults the real vLLM (CPU build) produces on demand: each ends in a documented non-zero exit,
one line naming the cause, no process of the server group left, and the port free."""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from openai_server.errors import ExitCode
from tests.conftest import assert_nothing_left, requires_vllm, server_groups, spawn
from tests.faults.conftest import record

pytestmark = [pytest.mark.e2e, requires_vllm]


def one_error_line(out: str) -> str:
    errors = [ln for ln in out.splitlines() if ln.startswith("serve: error:")]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


def test_unrecognized_flag_names_the_profile_key(tmp_path: Path) -> None:
    s = spawn(tmp_path, "--no-check", "--set", "extra_args=[--no-such-flag, '1']")
    t0 = time.monotonic()
    code = s.finish()
    record("bad flag (extra_args --no-such-flag)", time.monotonic() - t0, code)
    out = s.output()
    assert code == ExitCode.UNRECOGNIZED_ARGUMENT, out[-3000:]
    line = one_error_line(out)
    assert "--no-such-flag" in line and "extra_args" in line
    assert_nothing_left(out, s.port)


def test_port_taken_is_named(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        s = spawn(tmp_path, "--no-check", port=port)
        t0 = time.monotonic()
        code = s.finish()
        record("port taken (real vLLM, --no-check)", time.monotonic() - t0, code)
        out = s.output()
        assert code == ExitCode.PORT_IN_USE, out[-3000:]
        assert str(port) in one_error_line(out)
        assert_nothing_left(out, None)  # the port is ours: only the server group must be gone


def test_missing_model_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    s = spawn(tmp_path, "--no-check", "--set", f"model={missing}", env={"HF_HUB_OFFLINE": "1"})
    t0 = time.monotonic()
    code = s.finish()
    record("model not found (offline)", time.monotonic() - t0, code)
    out = s.output()
    assert code == ExitCode.MODEL_NOT_FOUND, out[-3000:]
    assert "no-such-model" in one_error_line(out)
    assert_nothing_left(out, s.port)


def test_sigterm_before_ready_stops_the_group(tmp_path: Path) -> None:
    s = spawn(tmp_path)
    s.wait_for("started the server", timeout=60)
    time.sleep(8)  # inside vLLM's start: engine processes are being created
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    code = s.finish()
    record("SIGTERM before ready", time.monotonic() - t0, code)
    out = s.output()
    assert code == ExitCode.TERMINATED, out[-3000:]
    assert "stopped by SIGTERM" in one_error_line(out)
    assert_nothing_left(out, s.port)


def test_engine_core_killed_after_ready_is_a_failure_not_exit_0(tmp_path: Path) -> None:
    s = spawn(tmp_path)
    s.wait_ready()
    pgid = server_groups(s.output())[-1]
    engine = next(
        p for p in psutil.process_iter(["name"])
        if p.info["name"] and p.info["name"].startswith("VLLM::EngineCor") and _pgid(p.pid) == pgid
    )  # fmt: skip
    t0 = time.monotonic()
    engine.kill()
    code = s.finish()
    record("engine core SIGKILLed after ready", time.monotonic() - t0, code)
    out = s.output()
    assert code not in (0, ExitCode.TERMINATED, ExitCode.INTERRUPTED), out[-3000:]
    assert code in (ExitCode.DIED_AFTER_READY, ExitCode.ENGINE_DIED), out[-3000:]
    assert "EngineCore" in one_error_line(out)
    assert_nothing_left(out, s.port)


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
    import os

    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


def test_kv_cache_too_small_suggests_vllms_own_max_model_len(tmp_path: Path) -> None:
    s = spawn(
        tmp_path, "--no-check", "--set", "max_model_len=600000",
        "--set", "env.VLLM_ALLOW_LONG_MAX_MODEL_LEN=1",
    )  # fmt: skip
    t0 = time.monotonic()
    code = s.finish(300)
    record("KV cache too small (max_model_len 600000)", time.monotonic() - t0, code)
    out = s.output()
    assert code == ExitCode.KV_CACHE_TOO_SMALL, out[-3000:]
    line = one_error_line(out)
    assert re.search(r"max_model_len: \d+", line), line
    assert_nothing_left(out, s.port)
