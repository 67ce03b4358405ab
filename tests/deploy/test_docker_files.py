"""Dockerfile and entrypoint.sh: linted in `make lint`; here, what lint cannot see.

There is no Docker engine on these machines, so the image is never built here; the entrypoint runs
for real against the launcher (with the fault-suite stand-in server, which starts in a second).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from openai_server.errors import ExitCode
from tests.conftest import ROOT, assert_nothing_left, free_port


def test_dockerfile_pins_the_vllm_image_and_probes_health() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base and re.fullmatch(r"vllm/vllm-openai:v0\.(2[6-9]|3[0-3])\.\d+", base.group(1))
    assert "HEALTHCHECK" in text and "serve probe --ready-file" in text
    assert re.search(r'^ENTRYPOINT \["tini", "--", "/usr/local/bin/entrypoint.sh"\]', text, re.M)


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command as Docker runs it (exec form, the container's env)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    m = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.M)
    assert m, "HEALTHCHECK in exec form"
    return subprocess.run(json.loads(m.group(1)), env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=30)  # fmt: skip


def test_entrypoint_execs_the_launcher_with_quoted_arguments(tmp_path: Path) -> None:
    port = free_port()
    ready = tmp_path / "serve-ready"  # where entrypoint.sh has the launcher write it ($TMPDIR)
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path),
           "PROFILE": "tests/faults/fake.yaml", "FAKE_VLLM": "--ready-after 2"}  # fmt: skip
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["sh", str(ROOT / "entrypoint.sh"), "--no-check", "--set", f"port={port}",
             "--set", "description=two words", "--log-format", "plain"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    starting = healthcheck(env)
    assert starting.returncode == ExitCode.NOT_READY and "no ready file" in starting.stderr
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    # the image's health check probes what the launcher serves: the port set by `--set port=`
    healthy = healthcheck(env)
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout == f"ready: http://127.0.0.1:{port} lists fake-model\n"
    # exec: the shell's pid is now the launcher's, so `docker stop` signals the launcher itself
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    assert b"launch" in cmdline and b"description=two words" in cmdline
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == ExitCode.TERMINATED
    assert_nothing_left(log.read_text(), port)
    assert healthcheck(env).returncode == ExitCode.NOT_READY  # the ready file went with it
