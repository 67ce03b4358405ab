"""Fuzz `serve validate` with random YAML and random bytes for a bounded time: whatever the input,
exit 0 or 3, at most one error line, never a traceback, bounded time and memory per input.

A seeded loop (no extra dependency, reproducible): a failure prints the seed and the input's
index, so `FUZZ_SEED=<seed>` replays it.
"""

from __future__ import annotations

import codecs
import os
import random
import time
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openai_server import loader
from openai_server.cli import app
from openai_server.errors import ProfileError
from openai_server.profile import Profile, Sampling

runner = CliRunner()
SEED = int(os.environ.get("FUZZ_SEED", "20261127"))
# A fixed number of inputs per run (the same ones for a seed, whatever the machine's load: the
# suite runs on several workers), not a time budget
INPUTS = 60
SET_VALUES = 150
MAX_SECONDS = 3.0  # per input, in process (an alias bomb takes minutes; a profile milliseconds)
MAX_TRACED_BYTES = 64 << 20  # per input
# Every 8th input runs under tracemalloc (which slows it down severalfold) for its memory.
TRACE_EVERY = 8

KEYS = [*Profile.model_fields, "sampling", "bogus", "max_num_seq", "<<", "1", ""]
SUB_KEYS = [*Sampling.model_fields, "method", "HF_TOKEN", "VLLM_API_KEY", "A", "x y"]
SCALARS = [
    "0", "-1", "16", "4096", "65536", "1e400", ".nan", "-.inf", "0x1F", "0o17", "1:30", "1_000",
    "true", "no", "off", "null", "~", "''", '""', "half", "bfloat16", "awq", "ngram", "::1",
    "0.0.0.0", "localhost", "a b", "builtin:tiny-phi3", "builtin:nope", "org/m", "--api-key",
    "--hf-token", "hf_" + "A" * 34, "2024-01-01", "2024-13-45", "12:00:00", '"\\0"', '"\\e[2J"',
    '"\\x85"', '"tab\\there"', '"\\u2028"', "!!binary aGVsbG8=", "!!int 99",
    "!!float x", "!!timestamp x", "!!python/name:os.system ''", "!!set {a}", "!!omap [a: 1]",
    "é", "模型", "🙂", "|\n  block\n  text", ">\n  folded", "'it''s'", "-", "? x",
]  # fmt: skip
SPECIALS = [*"[]{}:,-&*!|>'\"#%@` \t\n\r\\?", "\x00", "\x1b", "\ufeff", "\u2028", "---", "..."]
RARE_SCALARS = ['"\\ud800"', "1:" * 2000 + "1", "9" * 100, "x" * 2000]
# what may stand inside [...] and {...}: no block scalars, no plain ':' (YAML 1.1 flow)
FLOW_SCALARS = [v for v in SCALARS if v[0] in "'\"!" or not set(v) & set("|>?-:\n")]


def random_value(rng: random.Random, depth: int, anchors: list[str]) -> str:
    roll = rng.random()
    if anchors and roll < 0.1:
        return "*" + rng.choice(anchors)
    if depth > 3 or roll < 0.55:
        if rng.random() < 0.003:
            return rng.choice(RARE_SCALARS)
        return rng.choice(SCALARS if depth == 0 else FLOW_SCALARS)
    name = f"a{rng.randrange(1 << 30)}" if rng.random() < 0.3 else None
    if name and rng.random() < 0.1:  # an alias inside its own anchor: recursive
        anchors.append(name)
    items = [random_value(rng, depth + 1, anchors) for _ in range(rng.randrange(0, 7))]
    if name and name not in anchors:
        anchors.append(name)
    anchor = f"&{name} " if name else ""
    if roll < 0.8:
        return anchor + "[" + ", ".join(items) + "]"
    pairs = [f"{rng.choice(SUB_KEYS)}: {i}" for i in items]
    return anchor + "{" + ", ".join(pairs) + "}"


def random_yaml(rng: random.Random) -> str:
    anchors: list[str] = []
    lines = []
    for _ in range(rng.randrange(0, 14)):
        key = rng.choice(KEYS)
        value = random_value(rng, 0, anchors)
        if "\n" in value:
            value = value.replace("\n", "\n  ")
        lines.append(f"{key}: {value}")
    if rng.random() < 0.1:  # a random alias bomb or deep nesting, of random size
        levels, fanout = rng.randrange(2, 12), rng.randrange(2, 12)
        lines.append(f"x0: &x0 [{', '.join(['a'] * fanout)}]")
        lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * fanout)}]" for i in range(1, levels)]
    if rng.random() < 0.05:
        depth = rng.randrange(20, 5000)
        lines.append("speculative_config: " + "[" * depth + "]" * depth)
    return "\n".join(lines) + "\n"


def mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randrange(1, 8)):
        at = rng.randrange(len(chars) + 1)
        roll = rng.random()
        if roll < 0.4:
            chars.insert(at, rng.choice(SPECIALS))
        elif roll < 0.7 and chars:
            del chars[min(at, len(chars) - 1)]
        elif chars:
            chars[min(at, len(chars) - 1)] = chr(rng.randrange(0, 0x3000))
    return "".join(chars)


def random_input(rng: random.Random, seeds: list[str]) -> bytes:
    roll = rng.random()
    if roll < 0.35:
        return random_yaml(rng).encode("utf-8", "surrogatepass")
    if roll < 0.7:
        return mutate(rng, rng.choice(seeds)).encode("utf-8", "surrogatepass")
    if roll < 0.85:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2048)))
    text = mutate(rng, rng.choice(seeds))
    encoding = rng.choice(["utf-16-le", "utf-16", "utf-32", "latin-1", "cp1252", "utf-8-sig"])
    prefix = rng.choice([b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, b"\x00"])
    return prefix + text.encode(encoding, "replace")


def seed_profiles() -> list[str]:
    return [p.read_text() for p in sorted(loader.builtin_dir().glob("*.yaml"))]


def check_one(data: bytes, index: int, path: Path, traced: bool) -> int:
    path.write_bytes(data)
    if traced:
        tracemalloc.start()
    try:
        start = time.perf_counter()
        result = runner.invoke(app, ["validate", str(path)])
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
    finally:
        if traced:
            tracemalloc.stop()
    where = f"FUZZ_SEED={SEED} input {index}: {data[:300]!r}"
    assert result.exit_code in (0, 3), f"{where}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), where
    assert "Traceback" not in result.output, where
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == (0 if result.exit_code == 0 else 1), f"{where}\n{lines}"
    assert traced or elapsed < MAX_SECONDS, f"{where}: {elapsed:.2f} s"
    assert peak < MAX_TRACED_BYTES, f"{where}: {peak} bytes"
    return result.exit_code


@pytest.mark.timeout(120)
def test_validate_survives_random_yaml_and_bytes(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    seeds = seed_profiles()
    codes: dict[int, int] = {}
    for index in range(INPUTS):
        data = random_input(rng, seeds)
        code = check_one(data, index, tmp_path / "p.yaml", traced=index % TRACE_EVERY == 0)
        codes[code] = codes.get(code, 0) + 1
    assert sum(codes.values()) == INPUTS
    assert codes.get(3), codes  # the generator does reach the refusals


@pytest.mark.timeout(120)
def test_set_values_survive_random_yaml() -> None:
    """--set and SERVE_* values take the same parser: a refusal is a ProfileError, nothing else."""
    rng = random.Random(SEED + 1)
    keys = [*Profile.model_fields, "sampling.temperature", "env.A", "bogus"]
    for _ in range(SET_VALUES):
        value = mutate(rng, random_value(rng, 0, []))
        key = rng.choice(keys)
        start = time.perf_counter()
        try:
            loader.load_text("model: org/m\n", "<t>", sets=[f"{key}={value}"])
        except ProfileError as e:
            assert "\n" not in e.message and e.message.isprintable(), repr(value)
        assert time.perf_counter() - start < MAX_SECONDS, repr(value)
