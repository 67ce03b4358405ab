"""The one rule between a profile key and a vLLM flag, both ways. A leaf: it imports nothing of
serve, so that the launcher's diagnosis (launch/diagnose.py) names keys without the profile."""

from __future__ import annotations

from collections.abc import Collection


def flag(key: str, value: bool = True) -> str:
    """Profile key -> vLLM flag: `max_num_seqs` -> `--max-num-seqs`; `value=False` -> `--no-...`
    (vLLM's BooleanOptionalAction spelling)."""
    return ("--" if value else "--no-") + key.replace("_", "-")


def key_of(option: str, keys: Collection[str]) -> str:
    """vLLM flag -> profile key: `--max-model-len=4096` -> `max_model_len`. `--no-x` -> `x` when
    `x` is one of `keys`, else `no_x` (a flag of its own)."""
    key = option.split("=", 1)[0].lstrip("-").replace("-", "_")
    base = key.removeprefix("no_")
    return base if base != key and base in keys else key
