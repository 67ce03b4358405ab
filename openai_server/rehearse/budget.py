"""Rehearse on a bigger GPU as if it were a smaller one: the same KV-cache budget, scaled.

vLLM sizes its KV cache from `gpu_memory_utilization x the GPU's total memory` (less weights,
activation peak and non-torch memory), and those other terms do not depend on the card's size. So
a profile written for an H100 (or an L4, or a T4) rehearses on an H200 with the memory it would
have there by scaling its utilization by the ratio of the totals: 0.92 of an H100's 79.18 GiB is
72.85 GiB, 0.521 of an H200's 139.80 GiB. Measured: h100-tp2 at that budget on two H200s left
the KV cache the model predicts for two H100s (docs/measurements.md, "Tensor parallel 2").
What does not carry over is speed and compute capability: those stay this GPU's. vLLM's batch
defaults also depend on the card's memory (a T4 gets 2048 batched tokens and 256 sequences, an
H100 8192 and 1024): where the profile leaves them to vLLM, the target's are set, or the
activation peak would be the bigger card's.

Pure: the profile's utilization and the two totals in, the utilization to run with out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ProfileError
from ..preflight import gpus
from ..preflight.gpus import GiB
from ..preflight.memory import DEFAULT_GPU_MEMORY_UTILIZATION
from ..preflight.rules import batch_defaults


@dataclass(frozen=True)
class Budget:
    """The target GPU's budget and the utilization that gives it on this one."""

    target: str  # the catalog's display name
    target_total_bytes: int
    here: str
    here_total_bytes: int
    profile_utilization: float
    utilization: float  # on this GPU
    max_num_batched_tokens: int  # vLLM's default on the target, where the profile sets none
    max_num_seqs: int

    @property
    def budget_bytes(self) -> int:
        return int(self.target_total_bytes * self.profile_utilization)

    def line(self) -> str:
        return (
            f"memory held to the {self.target}'s budget: gpu_memory_utilization "
            f"{self.profile_utilization} of {self.target_total_bytes / GiB:.2f} GiB = "
            f"{self.budget_bytes / GiB:.2f} GiB, run as {self.utilization} of this "
            f"{self.here}'s {self.here_total_bytes / GiB:.2f} GiB (speed is this GPU's)"
        )


def held_to(name: str, utilization: float | None, here: gpus.Gpu) -> Budget:
    """The utilization on `here` that gives the budget `utilization` has on the GPU `name`."""
    target = gpus.catalog_gpu(name, f"--as-gpu {name}")
    if target.total_bytes >= here.total_bytes:
        raise ProfileError(
            f"--as-gpu {name}: the {target.name} ({target.total_bytes / GiB:.2f} GiB) is not "
            f"smaller than this {here.name} ({here.total_bytes / GiB:.2f} GiB); rehearse without "
            "--as-gpu"
        )
    util = utilization or DEFAULT_GPU_MEMORY_UTILIZATION
    # rounded down to vLLM's 4 places in our output: never a byte more than the target would have
    scaled = math.floor(util * target.total_bytes / here.total_bytes * 10_000) / 10_000
    batched, seqs = batch_defaults(target.name, target.total_bytes)
    return Budget(target.name, target.total_bytes, here.name, here.total_bytes, util, scaled,
                  batched, seqs)  # fmt: skip
