"""This host's record of which cache entries belong to which profile's start.

vLLM's hash directories say nothing of the profile that made them, so `pack` writes down what a
start it ran (or a bundle it restored) used: `pack` then reuses a compiled start instead of running
another, and `ls` can say per profile what is here. One JSON file in serve's cache, replaced whole.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

FILE = "compile-caches.json"


@dataclass(frozen=True)
class Record:
    profile: str
    digest: str  # manifest.compile_digest: profiles that compile alike share a record
    vllm: str
    entries: dict[str, list[str]]  # part -> entries under its root
    model_path: str
    created: str
    source: str  # "launch", "rehearse", "pack" (a start ran here) or "unpack <file>"


def now() -> str:
    """A record's (and a manifest's) `created`: UTC, to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def load(cache_root: Path) -> list[Record]:
    try:
        data = json.loads((cache_root / FILE).read_text())
        return [Record(**r) for r in data]
    except (OSError, ValueError, TypeError):  # none yet, or unreadable: start afresh
        return []


def find(records: list[Record], digest: str, vllm: str) -> Record | None:
    return next((r for r in records if r.digest == digest and r.vllm == vllm), None)


def record(cache_root: Path, new: Record) -> None:
    """Keep `new`, replacing an older record of the same profile digest and vLLM."""
    kept = [r for r in load(cache_root) if (r.digest, r.vllm) != (new.digest, new.vllm)]
    cache_root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".compile-caches-", dir=cache_root)
    with os.fdopen(fd, "w") as f:
        json.dump([asdict(r) for r in [*kept, new]], f, indent=2)
    os.replace(tmp, cache_root / FILE)
