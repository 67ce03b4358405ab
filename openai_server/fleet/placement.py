"""Which of the fleet's models can be loaded together, and whom to swap out for one that is asked
for. Pure: shares, GPU indices, states and times in; names out.

vLLM takes `gpu_memory_utilization` of the total memory of every GPU it uses, at start, whoever
else is on it: two engines at the default 0.9 on one GPU cannot both start (the second fails on
"not enough free memory" minutes later, or, started first, starves the other). An engine uses the
first tensor_parallel_size x pipeline_parallel_size GPUs it sees (CUDA_VISIBLE_DEVICES, from its
profile's `env`, else all). So the fleet adds up, per GPU, the shares of the engines loaded on it,
at most SHARE_LIMIT; an engine asleep (vLLM's sleep mode, level 1) still holds its CUDA context and
allocator pools, SLEEP_KEEP_BYTES of its GPU. `max_resident` caps the models loaded at once on any
host (on CPU, where nothing else bounds them).

Before anything starts, each model must fit alone and the pinned ones together (`check_host`).
Then `victims()` decides a swap: the least recently used models that are loaded, not pinned and
older than the fleet's minimum residency (no thrashing), as few as make room.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import RefusedError
from ..preflight.gpus import Hardware, visible
from ..preflight.memory import DEFAULT_GPU_MEMORY_UTILIZATION
from .spec import Member

# What the engines on one GPU may take together: each also holds a CUDA context and NCCL buffers
# outside its share (about 0.5 GiB), which the last 5% leaves room for.
SHARE_LIMIT = 0.95
# vLLM 0.26 on an H200 after POST /sleep?level=1 (Llama-3.1-8B shape): "Sleep mode freed 69.2 GiB
# memory, 1.85 GiB memory is still in use" (vLLM's CuMemAllocator, vllm/device_allocator/cumem.py).
SLEEP_KEEP_BYTES = 2 * 1024**3


def share_of(member: Member) -> float:
    return member.resolved.profile.gpu_memory_utilization or DEFAULT_GPU_MEMORY_UTILIZATION


def gpus_of(member: Member, count: int, uuid_of: Callable[[int], str] = str) -> list[int]:
    """The NVML indices of the GPUs this member's engine uses."""
    p = member.resolved.profile
    needed = (p.tensor_parallel_size or 1) * (p.pipeline_parallel_size or 1)
    return visible(count, p.env, uuid_of)[:needed]


def check_shares(
    members: Sequence[Member], count: int, source: str, uuid_of: Callable[[int], str] = str
) -> dict[int, float]:
    """Each GPU's share taken by these engines together; RefusedError when one is over
    SHARE_LIMIT (for the models that must be loaded together: the pinned ones)."""
    shares: dict[int, list[tuple[str, float]]] = {}
    for m in members:
        for gpu in gpus_of(m, count, uuid_of):
            shares.setdefault(gpu, []).append((m.name, share_of(m)))
    for gpu, taken in sorted(shares.items()):
        total = sum(s for _, s in taken)
        if total > SHARE_LIMIT + 1e-9:
            names = " + ".join(f"{n} {s:.2f}" for n, s in taken)
            raise RefusedError(
                f"{source}: GPU {gpu} is asked for {total:.2f} of its memory by models that must "
                f"be loaded together ({names}; gpu_memory_utilization); fix: give them their own "
                f"GPUs (env: CUDA_VISIBLE_DEVICES), pin fewer of them, or lower their "
                f"gpu_memory_utilization to add up to at most {SHARE_LIMIT}"
            )
    return {gpu: sum(s for _, s in taken) for gpu, taken in shares.items()}


def check_fleet(members: Sequence[Member], count: int, source: str) -> None:
    """Each model fits alone, the pinned ones together; the others swap."""
    for m in members:
        check_shares([m], count, source)
    check_shares([m for m in members if m.pin], count, source)


def check_host(members: Sequence[Member], source: str, hardware: Hardware | None = None) -> None:
    """check_fleet over the GPUs NVML sees here (none: a CPU host, nothing to add up); a model
    that asks for sleep mode needs them (vLLM's sleep mode is CUDA only)."""
    from ..preflight.gpus import detect

    hardware = hardware or detect()
    if hardware.count:
        check_fleet(members, hardware.count, source)
        return
    for m in members:
        if m.sleep:
            raise RefusedError(
                f"{source}: models.{m.name}.sleep: true needs NVIDIA GPUs (vLLM's sleep mode is "
                f"CUDA only) and this host has none; fix: leave sleep unset (stop and start)"
            )


# host memory the weights of sleeping engines may take together: the rest stays for the engines'
# own processes, the page cache and the tokenizers (a margin, not a measurement)
HOST_SHARE_FOR_SLEEP = 0.8


def sleepers(
    members: Sequence[Member], hardware: Hardware, weights: dict[str, int | None], host_bytes: int
) -> dict[str, bool]:
    """Which models swap out by sleeping (level 1: their weights go to pinned host memory) and
    which by stopping: `sleep` where the fleet file says; else on a GPU host, in the fleet's
    order, while host memory holds their weights together (`weights`: bytes, None when unknown,
    counted as fitting: a sleep that cannot pin its memory fails and the fleet stops instead)."""
    out: dict[str, bool] = {}
    budget = HOST_SHARE_FOR_SLEEP * host_bytes
    for m in members:
        if m.sleep is not None or not hardware.count:
            out[m.name] = bool(m.sleep)
            continue
        need = weights.get(m.name) or 0
        out[m.name] = need <= budget
        budget -= need if out[m.name] else 0
    return out


def weights_on_host(member: Member, hardware: Hardware) -> int | None:
    """The bytes a sleeping engine of this model copies to host memory: its weights on every GPU
    it uses (the preflight's memory model; None when the model's shape is unknown here)."""
    from ..preflight import rules
    from ..preflight.check import Target, gather
    from ..preflight.memory import weights_bytes

    try:
        facts = gather(member.resolved.profile, Target(check_port=False), hardware)
        if facts.shape is None or not hardware.gpus:
            return None
        settings = rules.default_settings(facts)
    except Exception:  # any doubt: unknown, which the fleet counts as fitting
        return None
    per_gpu = weights_bytes(facts.shape, settings)
    return per_gpu * settings.tensor_parallel_size * settings.pipeline_parallel_size


@dataclass(frozen=True)
class Slot:
    """What placement needs to know of one model now."""

    name: str
    gpus: tuple[int, ...]
    share: float
    state: str  # awake (loading, loaded, leaving) | asleep | off
    evictable: bool  # loaded, ready, not pinned, older than the minimum residency
    last_used: float
    sleeps: bool


def victims(
    target: str,
    slots: Sequence[Slot],
    keep: dict[int, float],
    max_resident: int | None,
) -> list[str] | None:
    """The models to swap out so that `target` can be loaded: [] when it fits now, None when it
    cannot yet (what is in the way is pinned, too young, or still loading; ask again later).
    `keep`: per GPU, the share an engine asleep still holds (SLEEP_KEEP_BYTES / its total)."""
    by_name = {s.name: s for s in slots}
    want = by_name[target]
    used: dict[int, float] = {}
    for s in slots:
        if s.name == target:
            continue
        for gpu in s.gpus:
            used[gpu] = used.get(gpu, 0.0) + _held(s, keep.get(gpu, 0.0))
    awake = sum(s.state == "awake" for s in slots if s.name != target)

    def fits() -> bool:
        over = max_resident is not None and awake + 1 > max_resident
        return not over and all(used.get(g, 0.0) + want.share <= SHARE_LIMIT + 1e-9
                                for g in want.gpus)  # fmt: skip

    chosen: list[str] = []
    candidates = [s for s in slots if s.name != target and s.state == "awake" and s.evictable]
    for s in sorted(candidates, key=lambda s: s.last_used):  # least recently used first
        if fits():
            break
        crowded = any(used.get(g, 0.0) + want.share > SHARE_LIMIT + 1e-9 for g in want.gpus)
        if not (set(s.gpus) & set(want.gpus) and crowded) and not (
            max_resident is not None and awake + 1 > max_resident
        ):
            continue  # swapping it out frees nothing the target needs
        chosen.append(s.name)
        awake -= 1
        for gpu in s.gpus:
            after = keep.get(gpu, 0.0) if s.sleeps else 0.0
            used[gpu] = used.get(gpu, 0.0) - s.share + after
    return chosen if fits() else None


def _held(s: Slot, keep: float) -> float:
    return {"awake": s.share, "asleep": keep}.get(s.state, 0.0)
