"""Memory calibrations that `serve rehearse` measured on this host, and their use by `serve check`.

The memory model predicts vLLM's KV cache from the model's shape and fitted constants; on a GPU
kind, vLLM release or split it was not fitted on, the overheads it cannot see (NCCL and
all-reduce buffers with tensor parallel, a newer attention backend's workspace) are off by a
fraction of a GiB: small in a large KV cache, decisive in a small one. A rehearsal measures the
difference between predicted and measured KV memory per GPU; `serve check` subtracts it when a
calibration for the same GPU, vLLM release, architecture and split exists, and says so.

The store is one JSON file in serve's cache ($SERVE_CACHE_DIR/calibration.json): small, readable,
and written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FILE = "calibration.json"
FORMAT = 1


@dataclass(frozen=True)
class Key:
    gpu: str  # NVML's name, e.g. "NVIDIA H100 80GB HBM3"
    vllm: str  # the release, e.g. "0.26.0"
    architecture: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    enforce_eager: bool
    quantization: str = ""  # fp8 weights take another path (and overhead) than bf16

    def matches(self, other: Key) -> bool:
        return self == other


@dataclass(frozen=True)
class Calibration:
    key: Key
    # predicted minus measured KV memory per GPU (bytes): what the model misses; the largest seen
    overhead_bytes: int
    date: str  # of the last measurement, ISO
    runs: int

    def note(self) -> str:
        return f"calibrated on this host, {self.date} ({self.runs} run(s))"


def path(cache_root: Path) -> Path:
    return cache_root / FILE


def load(cache_root: Path) -> list[Calibration]:
    """Every stored calibration; an unreadable or foreign file counts as none."""
    try:
        data = json.loads(path(cache_root).read_text())
        if data.get("format") != FORMAT:
            return []
        return [
            Calibration(Key(**e["key"]), int(e["overhead_bytes"]), str(e["date"]), int(e["runs"]))
            for e in data["entries"]
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def find(cache_root: Path, key: Key) -> Calibration | None:
    return next((c for c in load(cache_root) if c.key.matches(key)), None)


def record(cache_root: Path, key: Key, overhead_bytes: int, date: str) -> Calibration:
    """Store a measurement. The overhead kept is the largest seen for the key, and never below 0:
    a calibration only ever makes `serve check` more careful. (On an H200 the overhead moved by
    0.24 GiB between utilization 0.9 and 0.22: a negative one measured at 0.9 would have made a
    suggestion at 0.22 fail to start; it did, before this rule.)"""
    entries = load(cache_root)
    old = next((c for c in entries if c.key == key), None)
    new = Calibration(
        key,
        max(overhead_bytes, old.overhead_bytes if old else 0, 0),
        date,
        (old.runs if old else 0) + 1,
    )
    entries = [c for c in entries if c.key != key] + [new]
    data: dict[str, Any] = {"format": FORMAT, "entries": [asdict(c) for c in entries]}
    cache_root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".calibration-", dir=cache_root)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path(cache_root))
    return new
