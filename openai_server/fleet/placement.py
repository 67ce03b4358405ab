"""Do the fleet's models fit on this host's GPUs together? Pure: profiles and a GPU count in.

vLLM takes `gpu_memory_utilization` of the total memory of every GPU it uses, at start, whoever
else is on it: two engines at the default 0.9 on one GPU cannot both start (the second fails on
"not enough free memory" minutes later, or, started first, starves the other). An engine uses the
first tensor_parallel_size x pipeline_parallel_size GPUs it sees (CUDA_VISIBLE_DEVICES, from its
profile's `env`, else all). So the fleet adds up, per GPU, the shares of the engines that use it,
and refuses a fleet whose shares pass SHARE_LIMIT before starting anything, naming the models.

Swapping models in and out (vLLM's sleep mode) is not built yet: today every model is resident.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import RefusedError
from ..preflight.gpus import visible
from ..preflight.memory import DEFAULT_GPU_MEMORY_UTILIZATION
from .spec import Member

# What the engines on one GPU may take together: each also holds a CUDA context and NCCL buffers
# outside its share (about 0.5 GiB), which the last 5% leaves room for.
SHARE_LIMIT = 0.95


def gpus_of(member: Member, count: int, uuid_of: Callable[[int], str]) -> list[int]:
    """The NVML indices of the GPUs this member's engine uses."""
    p = member.resolved.profile
    needed = (p.tensor_parallel_size or 1) * (p.pipeline_parallel_size or 1)
    return visible(count, p.env, uuid_of)[:needed]


def check_shares(
    members: Sequence[Member], count: int, source: str, uuid_of: Callable[[int], str] = str
) -> dict[int, float]:
    """Each GPU's share taken by the fleet's engines; RefusedError when one is over SHARE_LIMIT."""
    shares: dict[int, list[tuple[str, float]]] = {}
    for m in members:
        share = m.resolved.profile.gpu_memory_utilization or DEFAULT_GPU_MEMORY_UTILIZATION
        for gpu in gpus_of(m, count, uuid_of):
            shares.setdefault(gpu, []).append((m.name, share))
    for gpu, taken in sorted(shares.items()):
        total = sum(s for _, s in taken)
        if total > SHARE_LIMIT + 1e-9:
            names = " + ".join(f"{n} {s:.2f}" for n, s in taken)
            raise RefusedError(
                f"{source}: GPU {gpu} is asked for {total:.2f} of its memory ({names}; "
                f"gpu_memory_utilization); fix: give each model its own GPUs (env: "
                f"CUDA_VISIBLE_DEVICES) or lower their gpu_memory_utilization to add up to at "
                f"most {SHARE_LIMIT} (swapping models is not built yet)"
            )
    return {gpu: sum(s for _, s in taken) for gpu, taken in shares.items()}


def check_host(members: Sequence[Member], source: str) -> None:
    """check_shares over the GPUs NVML sees here (none: a CPU host, nothing to add up)."""
    from ..preflight.gpus import detect

    hardware = detect()
    if hardware.count:
        check_shares(members, hardware.count, source)
