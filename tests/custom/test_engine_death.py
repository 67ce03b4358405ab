"""The custom server process on its own when vLLM's engine core dies after ready (real vLLM, CPU).

vLLM's own server exits 0 then (vllm 48966), which a supervisor takes for a clean stop. Ours must
notice by itself and exit 1, leaving nothing behind. The server is started from `serve render`'s
argv, without the launcher: the launcher watches engine processes itself and would stop the group
first, hiding what the server alone does (e.g. under another supervisor, or in a container).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import EAGER, ROOT, SERVE, free_port, group_members, requires_vllm

pytestmark = [pytest.mark.e2e, requires_vllm]


def test_engine_death_after_ready_makes_the_custom_server_exit_1(tmp_path: Path) -> None:
    port = free_port()
    rendered = subprocess.run(
        [*SERVE, "render", "-p", "tiny-cpu", "--set", "server=custom", "--set", f"port={port}", *EAGER[False],
         "--format", "json"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    command = json.loads(rendered.stdout)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command["argv"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, **command["env"]}, start_new_session=True,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        engine = next(
            p for p in psutil.process_iter(["name"])
            if (p.info["name"] or "").startswith("VLLM::EngineCor")
            and os.getpgid(p.pid) == proc.pid
        )  # fmt: skip
        engine.kill()
        code = proc.wait(timeout=60)
        output = log.read_text()
        assert code == 1, output[-3000:]
        assert "the engine died; stopping the server (exit 1)" in output
        deadline = time.monotonic() + 10
        while group_members(proc.pid):
            assert time.monotonic() < deadline, f"left behind: {group_members(proc.pid)}"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
