"""Model shapes from a local config.json, the local Hugging Face cache, the table, the tiny model."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openai_server import loader, tiny
from openai_server.preflight import check, models

PHI3_CONFIG = {
    "architectures": ["Phi3ForCausalLM"],
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32064,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}


def test_local_directory_config_gives_the_shape_and_a_computed_parameter_count(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(PHI3_CONFIG))
    shape = models.find(str(tmp_path))
    assert shape is not None and shape.head_dim == 96 and shape.architecture == "Phi3ForCausalLM"
    # computed from the config: within 0.1% of the checkpoint's 3,821,079,552 parameters
    assert abs(shape.params - 3_821_079_552) / 3_821_079_552 < 0.001


def test_builtin_table_is_case_insensitive_and_accepts_base_model_names():
    assert models.find("microsoft/Phi-3-mini-128k-instruct").max_positions == 131072
    assert models.find("Qwen/Qwen2.5-7B").kv_heads == 4


def test_head_dim_from_config_wins_over_hidden_over_heads():
    shape = models.from_config(dict(PHI3_CONFIG, head_dim=128), "test")
    assert shape.head_dim == 128


def test_tiny_model_shape_comes_from_its_generator_constants():
    shape = models.find("builtin:tiny-phi3")
    assert shape.layers == tiny.LAYERS and shape.head_dim == tiny.HIDDEN // tiny.HEADS


def test_unknown_model_has_no_shape(tmp_path):
    assert models.find("nobody/nothing", cache_dir=tmp_path) is None


# ---- the local Hugging Face cache, laid out as huggingface_hub writes it
# (https://huggingface.co/docs/hub/local-cache): refs/<name> holds a commit hash,
# snapshots/<hash>/config.json links into blobs/.

TABLE_MODEL = "microsoft/Phi-3-mini-4k-instruct"  # in the built-in table: 4096 positions
MAIN = "4d5e1c2b9a8f7e6d5c4b3a291807f6e5d4c3b2a1"  # refs/main
BRANCH = "9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2f1e0d9c8"  # refs/long-context
STALE = "f0e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d"  # no ref; sorts last, the old code's pick
POSITIONS = {MAIN: 8192, BRANCH: 131072, STALE: 2048}
LAYERS = {MAIN: 32, BRANCH: 40, STALE: 24}


def snapshot(repo: Path, commit: str, config: dict | None) -> Path:
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    if config is not None:
        data = json.dumps(config).encode()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(data)
        (snap / "config.json").symlink_to(os.path.relpath(blob, snap))
    return snap


def hf_cache(hub: Path, model: str = TABLE_MODEL, refs: bool = True) -> Path:
    repo = hub / ("models--" + model.replace("/", "--"))
    for commit in (MAIN, BRANCH, STALE):
        snapshot(
            repo,
            commit,
            dict(
                PHI3_CONFIG,
                max_position_embeddings=POSITIONS[commit],
                num_hidden_layers=LAYERS[commit],
            ),
        )
    if refs:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(MAIN)  # no newline, as huggingface_hub writes it
        (repo / "refs" / "long-context").write_text(BRANCH)
    return repo


def snapshot_of(config: Path | None) -> str | None:
    return config.parent.name if config is not None else None


def test_without_a_revision_the_snapshot_refs_main_names_is_used_not_the_last_one(tmp_path):
    hf_cache(tmp_path)
    assert sorted(POSITIONS)[-1] == STALE  # the alphabetical pick the cache lookup used to make
    assert snapshot_of(models.hf_cache_config(TABLE_MODEL, cache_dir=tmp_path)) == MAIN
    shape = models.find(TABLE_MODEL, cache_dir=tmp_path)
    assert shape is not None and (shape.max_positions, shape.layers) == (8192, 32)
    assert MAIN in shape.source


@pytest.mark.parametrize(
    ("revision", "commit"),
    [("long-context", BRANCH), ("main", MAIN), (STALE, STALE), (BRANCH, BRANCH)],
    ids=["branch", "main-by-name", "unreferenced-commit", "referenced-commit"],
)
def test_a_revision_picks_its_snapshot(tmp_path, revision, commit):
    hf_cache(tmp_path)
    found = models.hf_cache_config(TABLE_MODEL, revision, tmp_path)
    assert snapshot_of(found) == commit
    shape = models.find(TABLE_MODEL, revision=revision, cache_dir=tmp_path)
    assert shape is not None
    assert (shape.max_positions, shape.layers) == (POSITIONS[commit], LAYERS[commit])


def test_an_uncached_revision_falls_back_to_the_table_not_to_another_snapshot(tmp_path):
    hf_cache(tmp_path)
    for revision in ("v2.0", "0123456789abcdef0123456789abcdef01234567"):
        assert models.hf_cache_config(TABLE_MODEL, revision, tmp_path) is None
        shape = models.find(TABLE_MODEL, revision=revision, cache_dir=tmp_path)
        assert shape is not None and shape.source == "built-in table"
        assert shape.max_positions == 4096
    assert models.find("acme/unknown", revision="v2.0", cache_dir=tmp_path) is None


def test_main_snapshot_without_config_json_is_not_replaced_by_another(tmp_path):
    repo = hf_cache(tmp_path)
    other = "1111111111111111111111111111111111111111"
    snapshot(repo, other, None)  # e.g. only the tokenizer fetched at that commit
    (repo / "refs" / "main").write_text(other)
    assert models.hf_cache_config(TABLE_MODEL, cache_dir=tmp_path) is None
    assert models.find(TABLE_MODEL, cache_dir=tmp_path).source == "built-in table"


def test_a_cache_without_refs_main_uses_its_newest_snapshot(tmp_path):
    # e.g. fetched by commit hash only: huggingface_hub writes no ref for a full hash
    repo = hf_cache(tmp_path, "acme/my-model", refs=False)
    for age, commit in enumerate((BRANCH, STALE, MAIN)):  # BRANCH newest, MAIN oldest
        when = 1e9 - age
        link = repo / "snapshots" / commit / "config.json"
        os.utime(link, (when, when), follow_symlinks=False)
    assert snapshot_of(models.hf_cache_config("acme/my-model", cache_dir=tmp_path)) == BRANCH
    shape = models.find("acme/my-model", cache_dir=tmp_path)
    assert shape is not None and shape.max_positions == 131072 and "snapshots" in shape.source
    # a revision still means that revision
    assert models.hf_cache_config("acme/my-model", "main", tmp_path) is None


def test_a_repo_id_without_an_organisation_is_looked_up_too(tmp_path):
    hf_cache(tmp_path, "gpt2")
    assert snapshot_of(models.hf_cache_config("gpt2", cache_dir=tmp_path)) == MAIN


def test_paths_and_invalid_repo_ids_are_not_looked_up(tmp_path):
    hf_cache(tmp_path)
    (tmp_path / "models--a--b--c").mkdir()  # so that huggingface_hub's validation is reached
    for model in ("./org/name", "~/org/name", "/abs/org/name", "a/b/c"):
        assert models.hf_cache_config(model, cache_dir=tmp_path) is None, model


@pytest.mark.parametrize("variable", ["HF_HOME", "HF_HUB_CACHE"])
def test_hf_home_and_hf_hub_cache_are_honoured_as_huggingface_hub_reads_them(tmp_path, variable):
    hub = tmp_path / "hub" if variable == "HF_HOME" else tmp_path / "elsewhere"
    hf_cache(hub)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_HUB_CACHE")}
    env[variable] = str(tmp_path if variable == "HF_HOME" else hub)
    # a fresh interpreter: huggingface_hub reads these once, when it is imported
    code = f"from openai_server.preflight import models; print(models.find({TABLE_MODEL!r}).source)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    repo = hub / "models--microsoft--Phi-3-mini-4k-instruct"
    assert out.stdout.strip() == str(repo / "snapshots" / MAIN / "config.json")


# ---- through preflight's own gathering (check.gather), the cache at huggingface_hub's default


@pytest.fixture
def default_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    hf_cache(tmp_path)
    return tmp_path


def gathered_shape(*sets: str) -> models.Shape | None:
    text = f"model: {TABLE_MODEL}\nmax_model_len: 2048\n"
    prof = loader.load_text(text, "<test>", sets=list(sets)).profile
    return check.gather(prof, check.Target(gpu="H100", vllm_version="0.32.0")).shape


def test_serve_check_sizes_the_model_from_refs_main(default_cache):
    shape = gathered_shape()
    assert shape is not None and (shape.max_positions, shape.layers) == (8192, 32)


def test_serve_check_sizes_the_model_at_the_profiles_revision(default_cache):
    shape = gathered_shape("revision=long-context")
    assert shape is not None and (shape.max_positions, shape.layers) == (131072, 40)
