"""The OpenAI-compatible client examples run against the real tiny vLLM server and stream text.

(The custom server's clients, examples/sse_*_client.py, are run by tests/custom/test_e2e.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, Launched

pytestmark = pytest.mark.e2e

EXAMPLES = ["langchain_chat.py", "openai_chat_stream.py", "requests_sse_chat.py"]


def test_every_example_is_listed_in_the_examples_readme() -> None:
    readme = (ROOT / "examples" / "README.md").read_text()
    scripts = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
    assert [name for name in scripts if name not in readme] == []


@pytest.mark.parametrize("script", EXAMPLES)
@pytest.mark.parametrize("config", ["environment", "arguments"])
def test_example_streams_text(tiny_server: Launched, script: str, config: str) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_BASE_URL", "MODEL", "OPENAI_API_KEY")
    }
    args = ["Hello there", "--max-tokens", "12"]
    if config == "environment":
        env |= {"OPENAI_BASE_URL": f"{tiny_server.base_url}/v1", "MODEL": tiny_server.model}
    else:  # no MODEL: the scripts take the first model the server lists
        args += ["--base-url", f"{tiny_server.base_url}/v1"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.strip()) >= 5, done.stdout  # 12 tokens of the tiny model's noise
