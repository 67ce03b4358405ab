"""The checks of one node of a group, before `serve launch --node-rank R` starts anything.

What the profile-wide preflight (check.py) cannot know: this node's rank. The GPU count per node
and the memory fit per GPU are already the profile-wide checks' (rules.check_parallel,
rules.check_memory); reaching the head is the join's (multinode/group.py says so in one line when
the head does not answer). Here: the ports this rank must open, and /dev/shm, where NCCL puts its
intra-node buffers (a container's 64 MiB default fails tensor parallel: vLLM docs, "Using Docker",
--ipc=host or --shm-size; vllm issue 1710).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from .features import Line

GIB = 1024**3
SHM_REFUSED_BELOW = 1 * GIB  # NCCL between GPUs of one node fails here (the 64 MiB default)
SHM_WARN_BELOW = 16 * GIB  # vLLM's Docker docs' figure for tensor parallel (deploy/budgets.py)


@dataclass(frozen=True)
class NodeFacts:
    rank: int
    gpus_per_node: int
    ports: dict[str, int]  # what this rank must listen on: name -> port
    busy: frozenset[int]  # of those, the ones another process holds
    shm_bytes: int | None  # /dev/shm's size (None: no /dev/shm, e.g. macOS)
    uses_gpus: bool


def lines(facts: NodeFacts) -> list[Line]:
    out: list[Line] = []
    for name, port in facts.ports.items():
        if port in facts.busy:
            out.append(("port", "refused", f"{name} {port} is in use on this node",
                        "stop what holds it (`ss -ltnp`), or choose another port"))  # fmt: skip
        else:
            out.append(("port", "ok", f"{name} {port} is free", ""))
    shm = facts.shm_bytes
    if facts.uses_gpus and facts.gpus_per_node > 1 and shm is not None:
        size = f"/dev/shm is {shm / GIB:.2f} GiB"
        fix = "run the container with --ipc=host or --shm-size=16g (k8s: a memory-backed emptyDir)"
        if shm < SHM_REFUSED_BELOW:
            out.append(("shared memory", "refused", f"{size}: NCCL between this node's "
                        f"{facts.gpus_per_node} GPUs fails in it", fix))  # fmt: skip
        elif shm < SHM_WARN_BELOW:
            out.append(("shared memory", "warning", f"{size}, under the 16 GiB vLLM's Docker "
                        "docs give tensor parallel", fix))  # fmt: skip
        else:
            out.append(("shared memory", "ok", size, ""))
    return out


def busy_ports(ports: dict[str, int]) -> frozenset[int]:
    """Ports of `ports` that cannot be bound on all interfaces now."""
    busy = set()
    for port in ports.values():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                busy.add(port)
    return frozenset(busy)


def shm_bytes() -> int | None:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return st.f_blocks * st.f_frsize
