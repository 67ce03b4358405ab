"""What a `serve launch` start wrote in the compile caches, recorded for `serve cache pack`.

A rehearsal loads a generated model directory, so vLLM's compile key, which hashes the model's
path or hub id (vllm/config/model.py `compute_hash`), is not the real start's; the real start's
own entries are the ones the next pod of the same deployment looks up. So `serve launch` records,
once ready, the entries its start wrote (a cold start writes them all, a warm one little or
nothing), joined to what an earlier start of the same profile and vLLM recorded, and `serve cache
pack -p PROFILE` packs them without a rehearsal.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import index, locations, select
from . import manifest as mf


def record_start(
    name: str, profile_dump: dict[str, Any], vllm: str, model_path: str, since: float,
    environ: Mapping[str, str], cache_root: Path, source: str = "launch",
) -> index.Record | None:  # fmt: skip
    """Record what the start that began at `since` (epoch seconds) wrote; None if nothing.
    `source`: the command whose start it was ("launch", "rehearse")."""
    roots = locations.roots(environ)
    wrote = select.used_by_start("", roots, since)
    if not wrote:
        return None
    digest = mf.compile_digest(profile_dump)
    entries = {p: set(es) for p, es in wrote.items()}
    if (old := index.find(index.load(cache_root), digest, vllm)) is not None:
        for part, es in old.entries.items():  # what is still there of the earlier starts'
            entries.setdefault(part, set()).update(e for e in es if (roots[part] / e).exists())
    new = index.Record(name, digest, vllm, {p: sorted(es) for p, es in sorted(entries.items())},
                       model_path, index.now(), source)  # fmt: skip
    index.record(cache_root, new)
    return new


def record_quietly(name: str, profile_dump: dict[str, Any], vllm: str, model_path: str,
                   since: float, source: str) -> None:  # fmt: skip
    """`record_start` for a command's own start, in this environment and serve's cache: a record
    is a help, never a failure (a cache folder that changed under the walk, an unwritable one)."""
    from ..settings import settings

    with contextlib.suppress(OSError, ValueError):
        record_start(name, profile_dump, vllm, model_path, since, os.environ,
                     settings().cache_root, source)  # fmt: skip
