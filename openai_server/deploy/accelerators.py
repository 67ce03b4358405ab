"""Which GPU a rented target gets: the one `--gpu` names, else the smallest offer the profile fits.

A compose host or a Kubernetes node brings its own GPUs (the files ask only for a count); Hugging
Face and SkyPilot rent a machine by its GPU kind, so the file must name one. The choice runs the
same preflight as `serve check --gpu NAME:COUNT` for each offer of the target, smallest memory
first, and keeps the first that is not refused and whose KV-cache fit is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import RefusedError
from ..preflight import gpus
from ..preflight.check import Target, run
from ..preflight.rules import Report
from ..profile import Profile
from .budgets import gpus_needed


@dataclass(frozen=True)
class Choice:
    gpu: str | None  # a catalog name that `--gpu` accepts (e.g. "L4"); None: no GPU (CPU profile)
    count: int
    note: str  # why this GPU, printed by `serve deploy`
    report: Report | None = None  # the preflight on that GPU
    also: tuple[str, ...] = ()  # larger GPUs of the target that run it too (smallest first)


def catalog_name(spec_name: str) -> str | None:
    """`--gpu` spelling -> the catalog's short name ("a100-80gb" -> "A100-80"), None if unknown."""
    entry = gpus.find(spec_name)
    return gpus.short_name(entry) if entry else None


def judge(profile: Profile, gpu: str, count: int, vllm_version: str) -> Report:
    """The preflight of this profile on COUNT planned GPUs of kind GPU (no host facts)."""
    target = Target(gpu=f"{gpu}:{count}", vllm_version=vllm_version, check_port=False)
    return run(profile, target)


def choose(
    profile: Profile,
    offers: Sequence[str],
    *,
    target: str,
    gpu_spec: str | None,
    vllm_version: str,
) -> Choice:
    """The GPU for TARGET among OFFERS (catalog short names, smallest memory first).

    Raises RefusedError in one line when `--gpu` names a GPU the target does not rent, a count that
    is not the profile's, or when no offer runs the profile."""
    needed = gpus_needed(profile)
    if needed == 0:
        if gpu_spec:
            raise RefusedError(
                f"deploy --target {target}: --gpu {gpu_spec}, but {profile.model} runs on CPU; "
                "leave --gpu out"
            )
        return Choice(None, 0, "CPU: the built-in model runs on vLLM's CPU build")
    if not offers:
        raise RefusedError(
            f"deploy --target {target}: the profile needs {needed} GPUs on one machine, and "
            f"{target} rents no such machine; fix: tensor_parallel_size x pipeline_parallel_size "
            "of 1, 2, 4 or 8"
        )
    if gpu_spec:
        count = gpus.planned(gpu_spec).count  # a malformed or unknown --gpu: its own one line
        name = catalog_name(gpu_spec.partition(":")[0])
        if ":" not in gpu_spec:
            count = needed
        if name is None or name not in offers:
            raise RefusedError(
                f"deploy --target {target}: --gpu {gpu_spec}: {target} rents no such GPU; "
                f"it rents {', '.join(offers)}"
            )
        if count != needed:
            raise RefusedError(
                f"deploy --target {target}: --gpu {gpu_spec}: the profile needs {needed} GPU(s) "
                f"(tensor_parallel_size x pipeline_parallel_size); use --gpu {name}:{needed}"
            )
        report = judge(profile, name, count, vllm_version)
        if report.refused:
            raise RefusedError(f"deploy --target {target} on {name}:{count}: {report.refusal()}")
        return Choice(name, count, f"{name} x{count}: named by --gpu", report)
    judged = [(name, judge(profile, name, needed, vllm_version)) for name in offers]
    runs = [(name, r) for name, r in judged if not r.refused]
    sized = [(name, r) for name, r in runs if r.fit is not None]
    if sized:
        (name, report), *others = sized
        assert report.fit is not None
        kv = f"{report.fit.kv_cache_tokens:,} KV-cache tokens"
        return Choice(name, needed, f"{name} x{needed}: the smallest {target} GPU it fits ({kv})",
                      report, tuple(n for n, _ in others))  # fmt: skip
    if runs:
        # No shape to size it by: the largest offer is the one most likely to run it.
        name, report = runs[-1]
        return Choice(
            name,
            needed,
            f"{name} x{needed}: serve knows no shape for {profile.model}, so the largest "
            f"{target} GPU; pass --gpu NAME:{needed} to choose",
            report,
        )
    name, report = judged[-1]
    raise RefusedError(
        f"deploy --target {target}: no GPU it rents runs this profile ({name} x{needed}: "
        f"{report.refusal()})"
    )
