"""Model shapes from a local config.json, the local Hugging Face cache, the table, the tiny model."""

from __future__ import annotations

import json

from openai_server import tiny
from openai_server.preflight import models

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


def test_hugging_face_cache_snapshot_is_found_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    snap = tmp_path / "hub" / "models--acme--my-model" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(dict(PHI3_CONFIG, max_position_embeddings=8192)))
    shape = models.find("acme/my-model")
    assert shape is not None and shape.max_positions == 8192 and "snapshots" in shape.source


def test_builtin_table_is_case_insensitive_and_accepts_base_model_names():
    assert models.find("microsoft/Phi-3-mini-128k-instruct").max_positions == 131072
    assert models.find("Qwen/Qwen2.5-7B").kv_heads == 4


def test_head_dim_from_config_wins_over_hidden_over_heads():
    shape = models.from_config(dict(PHI3_CONFIG, head_dim=128), "test")
    assert shape.head_dim == 128


def test_tiny_model_shape_comes_from_its_generator_constants():
    shape = models.find("builtin:tiny-phi3")
    assert shape.layers == tiny.LAYERS and shape.head_dim == tiny.HIDDEN // tiny.HEADS


def test_unknown_model_has_no_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert models.find("nobody/nothing") is None
