"""The main path, for real: `serve launch -p tiny-cpu` on the CPU build of vLLM.

The shared server (tests/conftest.py `tiny_server`) is started once per session; its stop at the
end of the session asserts exit 143 and that no process of its group is left.
"""

from __future__ import annotations

import re
import subprocess

import httpx
import pytest

from openai_server.errors import ExitCode
from tests.conftest import SERVE, Launched

pytestmark = pytest.mark.e2e


def test_ready_line_names_url_model_and_time(tiny_server: Launched) -> None:
    out = tiny_server.log.read_text()
    m = re.search(r"serve: ready: (\S+) serves 'tiny-phi3' \((\d+\.\d) s to ready\)", out)
    assert m, out[-2000:]
    assert m.group(1) == f"{tiny_server.base_url}/v1"
    assert 1 < float(m.group(2)) < 300


def test_model_is_listed_when_ready(tiny_server: Launched) -> None:
    ids = [m["id"] for m in httpx.get(f"{tiny_server.base_url}/v1/models").json()["data"]]
    assert ids == ["tiny-phi3"]


def test_probe_with_the_profile_finds_it_ready(tiny_server: Launched) -> None:
    out = subprocess.run(
        [*SERVE, "probe", "--profile", "tiny-cpu", "--set", f"port={tiny_server.port}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "tiny-phi3" in out.stdout


def test_probe_for_another_model_is_not_ready_and_lists_what_is(tiny_server: Launched) -> None:
    out = subprocess.run(
        [*SERVE, "probe", "--url", tiny_server.base_url, "--model", "other"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == ExitCode.NOT_READY
    assert "model 'other' not listed (listed: tiny-phi3)" in out.stderr


def test_sampling_defaults_from_the_profile_apply(tiny_server: Launched) -> None:
    # tiny-cpu sets sampling.max_tokens: 128; a chat request without max_tokens gets it
    body = {"model": "tiny-phi3", "messages": [{"role": "user", "content": "hi"}],
            "ignore_eos": True}  # fmt: skip
    r = httpx.post(f"{tiny_server.base_url}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 128
