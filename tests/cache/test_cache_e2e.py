"""A bundle packed in one home and restored in another, with the real vLLM (CPU build)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openai_server import tiny
from openai_server.cache import bundle, locations
from tests.cache.test_pack_start import cached_hub_model
from tests.conftest import ROOT

SERVE = [sys.executable, "-m", "openai_server"]


def home_env(home: Path) -> dict[str, str]:
    """A fresh host's user: only HOME says where the caches are, so every cache of the start
    (vLLM's, Inductor's under serve's default, serve's own with the generated models) is in it."""
    env = {**os.environ, "HOME": str(home)}
    for var in ("XDG_CACHE_HOME", "VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR",
                "TRITON_HOME", "SERVE_CACHE_DIR"):  # fmt: skip
        env.pop(var, None)
    return env


def serve(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run([*SERVE, *args], env=env, capture_output=True, text=True, cwd=ROOT,
                         timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def inductor_entries(home: Path) -> set[str]:
    root = locations.root("inductor", {"HOME": str(home)})
    return {e for p in root.rglob("*") if p.is_file()
            if (e := locations.entry_of("inductor", p.relative_to(root).as_posix()))}  # fmt: skip


@pytest.mark.e2e
def test_a_bundle_packed_in_one_home_is_the_cache_a_start_in_another_uses(tmp_path: Path) -> None:
    bundle = tmp_path / "tiny.tar.gz"
    one = home_env(tmp_path / "one")
    packed = serve(["cache", "pack", "-p", "tiny-cpu", "-o", str(bundle)], one)
    assert "packed tiny-cpu (compiled by a start" in packed, packed

    two = home_env(tmp_path / "two")
    restored_line = serve(["cache", "unpack", str(bundle)], two)
    assert "restored tiny-cpu" in restored_line and "inductor" in restored_line, restored_line
    assert "note:" not in restored_line  # Inductor's cache is keyed by the graph, not the path
    restored = inductor_entries(tmp_path / "two")
    assert any(e.startswith("fxgraph/") for e in restored), restored
    assert "finds its compile cache here" in serve(["cache", "ls"], two)

    report = json.loads(serve(["rehearse", "-p", "tiny-cpu", "--json", "--no-bench",
                               "--no-calibrate"], two))  # fmt: skip
    start = report["starts"][0]
    assert start["seconds_to_ready"] is not None, start
    # the start loaded its graphs from the restored entries: it compiled (wrote) none of its own
    assert start["compiled"] is False, start
    assert inductor_entries(tmp_path / "two") == restored


@pytest.mark.e2e
def test_a_pack_loads_a_hub_model_by_its_name_where_its_config_is_cached(tmp_path: Path) -> None:
    """vLLM keys its compile cache by the model's name and config (vllm/config/model.py
    compute_hash), so the pack's start loads the profile's own model, with dummy weights, where
    the Hugging Face cache has its config: the bundle then fits a deployment of that name. The
    tiny model's config stands in for a hub model's, fetched by `hf download MODEL config.json`."""
    hf = tmp_path / "hf"
    config = json.loads((tiny.ensure(None) / "config.json").read_text())
    cached_hub_model(hf / "hub", "serve-test/tiny", config)
    profile = tmp_path / "hub.yaml"
    text = (ROOT / "profiles" / "tiny-cpu.yaml").read_text()
    profile.write_text(text.replace("model: builtin:tiny-phi3", "model: serve-test/tiny"))
    bundle_file = tmp_path / "hub.tar.gz"

    packed = serve(["cache", "pack", "-p", str(profile), "-o", str(bundle_file)],
                   {**home_env(tmp_path / "one"), "HF_HOME": str(hf)})  # fmt: skip
    assert "compiled by a start" in packed and "note:" not in packed, packed
    assert bundle.read_manifest(bundle_file).model_path == "serve-test/tiny"
