"""Which model the pack's start loads, and which recorded start a pack takes: vLLM keys its compile
cache by the model's name and config (vllm/config/model.py compute_hash), so a bundle fits a
deployment only when its start named the model as the deployment does."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pytest

from openai_server import loader, tiny
from openai_server.cache import index, select
from openai_server.cache_commands import serves_deployment, start_profile
from openai_server.profile import Profile
from tests.preflight.test_models import snapshot

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VLLM_ENTRIES = {"vllm": ["torch_compile_cache/abc"]}  # keyed by the model path
INDUCTOR_ENTRIES = {"inductor": ["fxgraph/cd/fNEW"]}  # keyed by content


@pytest.fixture(autouse=True)
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve's cache (where the rehearsal's copy is generated) and an empty hub cache."""
    monkeypatch.setenv("SERVE_CACHE_DIR", str(tmp_path / "serve"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def tiny_config() -> str:
    return (tiny.ensure(None) / "config.json").read_text()


def cached_hub_model(hub: Path, model: str, config: dict[str, object]) -> None:
    """`model`'s config.json in a Hugging Face hub cache, as `hf download MODEL config.json`
    leaves it (tests/preflight/test_models.py lays snapshots out as huggingface_hub does)."""
    repo = hub / ("models--" + model.replace("/", "--"))
    snapshot(repo, COMMIT, config)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def profile(model: str, extra: str = "") -> Profile:
    return loader.load_text(f"model: {model}\ndtype: float32\n{extra}").profile


def test_a_local_model_directory_is_loaded_by_its_own_path(tmp_path: Path) -> None:
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text(tiny_config())
    run, loaded = start_profile(profile(str(model)), 8123)
    assert loaded == run.model == str(model)
    assert run.load_format == "dummy" and run.port == 8123
    assert run.tokenizer and (Path(str(run.tokenizer)) / "tokenizer.json").is_file()
    assert "HF_HUB_OFFLINE" not in run.env


def test_a_hub_model_with_its_config_cached_is_loaded_by_its_name_offline(tmp_path: Path) -> None:
    cached_hub_model(tmp_path / "hub", "org/m", json.loads(tiny_config()))
    run, loaded = start_profile(profile("org/m", "env:\n  A: b\n"), 8123)
    assert loaded == run.model == "org/m" and run.load_format == "dummy"
    assert run.env == {"A": "b", "HF_HUB_OFFLINE": "1"}  # the cached config, no network


def test_a_model_without_a_config_here_is_a_generated_copy() -> None:
    prof = profile("microsoft/Phi-3-mini-4k-instruct")  # in serve's shape table only
    run, loaded = start_profile(prof, 8123)
    assert loaded == run.model != prof.model
    assert (Path(loaded) / "config.json").is_file()
    assert json.loads((Path(loaded) / "config.json").read_text())["model_type"] == "phi3"


def record(model_path: str, entries: dict[str, list[str]]) -> index.Record:
    return index.Record("p", "d", "0.26.0", entries, model_path, "2026-12-02T00:00:00+00:00",
                        "rehearse")  # fmt: skip


def test_a_recorded_start_serves_a_deployment_only_under_the_model_s_own_name(
    tmp_path: Path,
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(tiny_config())
    own = profile(str(model))
    assert serves_deployment(record(str(model), VLLM_ENTRIES), own)
    # a rehearsal's copy: vLLM's entries miss a deployment that loads the model itself
    assert not serves_deployment(record("/cache/rehearsal/m-1", VLLM_ENTRIES), own)
    assert serves_deployment(record("/cache/rehearsal/m-1", INDUCTOR_ENTRIES), own)
    # no config of it here: a pack's own start would load a copy too
    table = profile("microsoft/Phi-3-mini-4k-instruct")
    assert serves_deployment(record("/cache/rehearsal/m-1", VLLM_ENTRIES), table)


def test_only_a_local_path_can_be_absent(tmp_path: Path) -> None:
    assert select.model_absent(str(tmp_path / "gone"))
    assert not select.model_absent(str(tmp_path))
    assert not select.model_absent("org/m")  # a hub id names the same model everywhere
    assert not select.model_absent("")
