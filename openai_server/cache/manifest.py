"""What a bundle holds and whether this host may use it. Pure: facts in, a value or a line out.

A compiled artifact is only as good as the releases and the chip that made it: vLLM hashes its own
version and config into the cache key (vllm/config/vllm.py `compute_hash`,
vllm/compilation/caching.py `aot_compile_hash_factors`), torch's kernels and Triton's PTX are for
one compute capability. Another vLLM would never read the bundle; another architecture could read
kernels it cannot run. Both are refused before a byte is written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = 1
NAME = "manifest.json"  # the bundle's first member
# The profile keys that reach a factor of vLLM's compile hash (ModelConfig, CacheConfig,
# ParallelConfig, CompilationConfig compute_hash, and the VLLM_* environment through
# vllm/envs.py `compile_factors`): recorded so a reader sees what the bundle was compiled for.
HASHED_KEYS = (
    "model", "revision", "dtype", "quantization", "max_model_len", "max_num_batched_tokens",
    "kv_cache_dtype", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size",
    "enforce_eager", "speculative_config", "enable_lora", "max_lora_rank",
    "enable_prefix_caching",
)  # fmt: skip


class ManifestError(ValueError):
    """A manifest that is not one this release writes."""


@dataclass(frozen=True)
class Device:
    """What the artifacts were compiled for: "cpu", or a GPU's name and compute capability."""

    kind: str  # "cpu" | "gpu"
    name: str = ""
    compute_capability: str = ""  # "9.0"

    def line(self) -> str:
        return "cpu" if self.kind == "cpu" else f"{self.name} (sm {self.compute_capability})"


@dataclass(frozen=True)
class Host:
    """The facts of the host a bundle is packed on or restored to."""

    vllm: str
    torch: str
    device: Device


@dataclass(frozen=True)
class File:
    part: str  # locations.PARTS
    path: str  # relative to the part's root
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    host: Host
    profile: str
    profile_digest: str
    hashed_settings: dict[str, Any]
    entries: dict[str, list[str]]  # part -> the top-level entries restored under its root
    files: list[File]
    created: str  # ISO 8601, UTC
    model_path: str = ""  # the model the start loaded: vLLM hashes this string into its key
    format: int = FORMAT
    sizes: dict[str, int] = field(default_factory=dict)  # part -> bytes
    roots: dict[str, str] = field(default_factory=dict)  # part -> where it lay on the packer
    compile_digest: str = ""  # compile_digest(): what this host's record is keyed by

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def profile_digest(profile_dump: dict[str, Any]) -> str:
    """A stable digest of a profile's effective values (key order and formatting do not count)."""
    text = json.dumps(profile_dump, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Profile keys that change how the server is reached or answers, never what a start compiles:
# starts that differ only in these share their compile-cache entries (cache/index.py records).
SERVING_ONLY = frozenset({
    "description", "extends", "port", "host", "served_model_name", "sampling", "api_key_env",
    "restart", "shutdown_timeout", "enable_auto_tool_choice", "tool_call_parser",
    "reasoning_parser", "chat_template", "generation_config", "allow_runtime_lora_updating",
    "download_dir", "master_addr", "master_port", "data_parallel_address",
    "data_parallel_rpc_port", "network_interface", "python", "seed",
})  # fmt: skip


def compile_digest(profile_dump: dict[str, Any]) -> str:
    """The digest of what a start of the profile compiles: the profile less SERVING_ONLY."""
    return profile_digest({k: v for k, v in profile_dump.items() if k not in SERVING_ONLY})


def hashed_settings(profile_dump: dict[str, Any]) -> dict[str, Any]:
    """The profile's values that enter vLLM's compile hash, unset ones left out."""
    out = {k: profile_dump[k] for k in HASHED_KEYS if profile_dump.get(k) is not None}
    env = profile_dump.get("env") or {}
    if vllm_env := {k: v for k, v in env.items() if k.startswith("VLLM_")}:
        out["env"] = vllm_env
    return out


def build(host: Host, profile: str, profile_dump: dict[str, Any], entries: dict[str, list[str]],
          files: list[File], created: str, model_path: str = "",
          roots: dict[str, str] | None = None) -> Manifest:  # fmt: skip
    sizes: dict[str, int] = {}
    for f in files:
        sizes[f.part] = sizes.get(f.part, 0) + f.size
    return Manifest(host=host, profile=profile, profile_digest=profile_digest(profile_dump),
                    compile_digest=compile_digest(profile_dump),
                    hashed_settings=hashed_settings(profile_dump),
                    entries={p: sorted(e) for p, e in entries.items() if e},
                    files=sorted(files, key=lambda f: (f.part, f.path)), created=created,
                    model_path=model_path, sizes=sizes,
                    roots={p: r for p, r in (roots or {}).items() if p in entries})  # fmt: skip


def parse(text: str) -> Manifest:
    """The manifest in a bundle; ManifestError for anything else."""
    try:
        d = json.loads(text)
        if d.get("format") != FORMAT:
            raise ManifestError(f"manifest format {d.get('format')!r}, this serve reads {FORMAT}")
        h = d["host"]
        host = Host(str(h["vllm"]), str(h["torch"]), Device(**h["device"]))
        files = [File(str(f["part"]), str(f["path"]), int(f["size"]), str(f["sha256"]))
                 for f in d["files"]]  # fmt: skip
        return Manifest(host=host, profile=str(d["profile"]),
                        profile_digest=str(d["profile_digest"]),
                        hashed_settings=dict(d["hashed_settings"]),
                        entries={str(k): [str(e) for e in v] for k, v in d["entries"].items()},
                        files=files, created=str(d["created"]),
                        model_path=str(d.get("model_path", "")),
                        sizes={str(k): int(v) for k, v in d.get("sizes", {}).items()},
                        roots={str(k): str(v) for k, v in d.get("roots", {}).items()},
                        compile_digest=str(d.get("compile_digest", "")))  # fmt: skip
    except ManifestError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ManifestError(f"unreadable manifest ({type(e).__name__}: {e})") from None


def refusal(bundle: Manifest, here: Host) -> str | None:
    """Why this host must not use the bundle, in one line; None when it may."""
    b = bundle.host
    if b.vllm != here.vllm:
        return (f"packed with vLLM {b.vllm}, this host has {here.vllm}: vLLM hashes its version "
                "into the cache key and would compile anyway; pack again here")  # fmt: skip
    if b.torch != here.torch:
        return f"packed with torch {b.torch}, this host has {here.torch}; pack again here"
    if b.device.kind != here.device.kind:
        return f"packed on {b.device.line()}, this host runs on {here.device.line()}"
    if b.device.compute_capability != here.device.compute_capability:
        return (f"packed on {b.device.line()}, this host has {here.device.line()}: kernels are "
                "built for one GPU architecture")  # fmt: skip
    return None


# Parts whose entries hold the absolute path they were built at: FlashInfer writes ninja files
# naming its workspace and runs ninja at every load (flashinfer/jit/core.py: build.ninja written
# when different, then run_ninja), so a build restored under another root is built again.
PATH_BOUND = ("flashinfer",)


def moved(bundle: Manifest, here: dict[str, str]) -> list[str]:
    """`part: packed at A, here B` for each path-bound part restored under another root."""
    return [f"{p}: packed at {bundle.roots[p]}, here {here[p]}" for p in PATH_BOUND
            if p in bundle.entries and bundle.roots.get(p, here.get(p)) != here.get(p)]  # fmt: skip


def check_paths(bundle: Manifest, parts: tuple[str, ...]) -> str | None:
    """A manifest naming an unknown part or a path that leaves its root is refused (a crafted
    bundle must not write outside the cache roots, whatever tar itself would allow)."""
    for part, entries in bundle.entries.items():
        if part not in parts:
            return f"unknown cache part {part!r}"
        if bad := next((e for e in entries if not _safe(e)), None):
            return f"unsafe entry {bad!r} in part {part}"
    for f in bundle.files:
        if f.part not in parts:
            return f"unknown cache part {f.part!r}"
        if not _safe(f.path):
            return f"unsafe path {f.path!r} in part {f.part}"
        entries = bundle.entries.get(f.part, [])
        if not any(f.path == e or f.path.startswith(f"{e}/") for e in entries):
            return f"{f.part}/{f.path} belongs to no entry of the manifest"
    return None


def _safe(path: str) -> bool:
    bits = path.split("/")
    return not path.startswith("/") and not {"..", ".", ""} & set(bits)
