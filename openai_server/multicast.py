"""Tensor parallel on hosts without NVLink multicast: the all-reduce settings that do not need it.

vLLM 0.26 with tensor parallel on Hopper fuses all-reduce into RMSNorm and lets FlashInfer pick its
`mnnvl` all-reduce backend, which is built on NVLink multicast. Where multicast is unavailable or
switched off (NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1: many
shared hosts set these, because a program that uses multicast there can take the host's GPUs out
of service), vLLM does not read those variables itself: the start crashes after minutes with a
CUBLAS internal error and illegal memory accesses in the workers, after "Auto-selected flashinfer
allreduce backend: mnnvl" (measured on two H100s; docs/vllm-facts.md). The safe form is plain NCCL
all-reduce: no custom all-reduce, no fused all-reduce + RMSNorm pass, no symmetric memory, and
FlashInfer's TensorRT-LLM backend if it is used at all.

Pure: the profile and an environment in, the extra flags, variables and the reason out. The
profile key `nvlink_multicast` overrides the decision (false: always the safe form; true: never).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from .profile import Profile

# Variables by which a host says that NVLink multicast must not be used (NCCL, PyTorch, NVSHMEM).
MULTICAST_OFF = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}
SAFE_ARGS = [
    "--disable-custom-all-reduce",
    "--compilation-config",
    json.dumps({"pass_config": {"fuse_allreduce_rms": False}}, separators=(",", ":")),
]
SAFE_ENV = {
    "VLLM_ALLREDUCE_USE_SYMM_MEM": "0",
    "VLLM_FLASHINFER_ALLREDUCE_BACKEND": "trtllm",
}


@dataclass(frozen=True)
class AllReduce:
    """What the rendered command adds for all-reduce, and why (shown by `render --explain`)."""

    why: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def safe(self) -> bool:
        return bool(self.args or self.env)


def all_reduce(profile: Profile, environ: Mapping[str, str]) -> AllReduce:
    """The all-reduce settings for `profile` started in `environ` (the launcher's environment;
    the profile's own `env` is part of what the server sees, so it counts too)."""
    gpus = (profile.tensor_parallel_size or 1) * (profile.pipeline_parallel_size or 1)
    if gpus == 1:
        return AllReduce("one GPU: no all-reduce")
    if profile.nvlink_multicast is True:
        return AllReduce("nvlink_multicast: true (vLLM picks its all-reduce, multicast included)")
    if profile.nvlink_multicast is False:
        reason = "nvlink_multicast: false"
    else:
        seen = {**environ, **profile.env}
        off = [f"{k}={v}" for k, v in MULTICAST_OFF.items() if seen.get(k) == v]
        if not off:
            return AllReduce(
                "NVLink multicast is not switched off here (set nvlink_multicast: false where it "
                "is unavailable)"
            )
        reason = f"NVLink multicast is off here ({', '.join(off)})"
    args = list(SAFE_ARGS)
    if "--compilation-config" in profile.extra_args or any(
        a.startswith("--compilation-config=") for a in profile.extra_args
    ):
        # the user's compilation config wins whole (argparse keeps the last one): theirs to set
        args = args[:1]
        reason += "; extra_args sets --compilation-config, so fuse_allreduce_rms is yours to set"
    # the profile's own env wins over ours, as it does for every variable
    env = {k: v for k, v in SAFE_ENV.items() if k not in profile.env}
    return AllReduce(f"{reason}: plain NCCL all-reduce, nothing that needs multicast", args, env)


def fuses_all_reduce(argv: list[str]) -> bool:
    """Whether vLLM keeps its fused all-reduce + RMSNorm pass for this rendered command: off only
    where the last `--compilation-config` (argparse keeps the last) sets
    pass_config.fuse_allreduce_rms to false. The pass's workspace is memory the KV cache does not
    get (preflight/memory.py)."""
    config: str | None = None
    for i, arg in enumerate(argv):
        if arg == "--compilation-config" and i + 1 < len(argv):
            config = argv[i + 1]
        elif arg.startswith("--compilation-config="):
            config = arg.split("=", 1)[1]
    if config is None:
        return True
    try:
        parsed = json.loads(config)
    except ValueError:  # an optimization level ("3") or not JSON: vLLM's defaults
        return True
    passes = parsed.get("pass_config") if isinstance(parsed, dict) else None
    return not (isinstance(passes, dict) and passes.get("fuse_allreduce_rms") is False)
