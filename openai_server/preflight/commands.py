"""`serve check`, the check `serve launch` runs first, and the choice of a profile for this host."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import typer

from .. import loader
from .. import ports as default_ports
from ..cli_common import ProfileOpt, SetOpt, profile_ref
from ..errors import ProfileError, RefusedError
from ..profile import BUILTIN_MODEL_PREFIX, Profile
from . import gpus, models
from .check import Target, run
from .gpus import GiB
from .rules import Report

WARN_PREFIX = "serve: check: "


def check_cmd(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    gpu: Annotated[
        str | None,
        typer.Option(help="plan for a GPU you do not have: NAME[:COUNT], e.g. T4, A100-80:2"),
    ] = None,
    vllm_version: Annotated[
        str | None, typer.Option(help="check flags against a shipped vLLM release (0.26, 0.32)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    hub: Annotated[
        bool,
        typer.Option(
            "--hub",
            help="count the weights from the Hub's safetensors headers where the checkpoint is "
            "not on this host (network; HF_TOKEN for gated models)",
        ),
    ] = False,
    list_profiles: Annotated[
        bool,
        typer.Option("--list-profiles", help="which built-in profiles run on this host / --gpu"),
    ] = False,
) -> None:
    """Check a profile before launch: vLLM flags, GPU, memory fit (exit 0 ok, 4 refused)."""
    if list_profiles:
        print_host_fits(profiles_for_host(gpu, vllm_version=vllm_version), as_json)
        return
    resolved = loader.load(profile_ref(profile), sets=set_ or [])
    target = Target(gpu=gpu, vllm_version=vllm_version, python=_python(resolved.profile), hub=hub)
    report = run(resolved.profile, target)
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report)
    if (refusal := report.refusal()) is not None:
        raise RefusedError(refusal)


def before_launch(profile: Profile, *, python: str) -> gpus.Hardware:
    """Run the preflight checks; raise RefusedError when the profile cannot start. Returns the
    GPUs it found (a node's own checks use them: NVML is asked once)."""
    hardware = gpus.detect()
    report = run(profile, Target(python=profile.python or python), hardware)
    for c in report.warnings:
        print(f"{WARN_PREFIX}{c.name}: {c.reason}", file=sys.stderr, flush=True)
    refused = [c for c in report.checks if c.status == "refused"]
    if refused:
        more = f" (and {len(refused) - 1} more; see `serve check`)" if len(refused) > 1 else ""
        raise RefusedError(f"check: {report.refusal()}{more} (--no-check skips the checks)")
    return hardware


def before_node(profile: Profile, *, rank: int, control_port: int, hardware: gpus.Hardware) -> None:
    """One node's own checks (preflight/node.py): the ports its rank opens, /dev/shm; RefusedError
    when the node cannot take its part."""
    from . import node

    ports: dict[str, int] = {}
    if rank == 0:
        ports["the API port"] = profile.effective_port
        ports["the head's control port"] = control_port
        if profile.distributed_executor_backend == "ray":
            ports["Ray's head port"] = default_ports.RAY_GCS
        elif profile.plan.nnodes_launcher:
            ports["master_port (torch.distributed's rendezvous)"] = (
                profile.master_port or default_ports.MASTER
            )
    facts = node.NodeFacts(
        rank=rank,
        gpus_per_node=profile.plan.gpus_per_node,
        ports=ports,
        busy=node.busy_ports(ports),
        shm_bytes=node.shm_bytes(),
        uses_gpus=hardware.count > 0,
    )
    report = Report()
    for name, status, reason, fix in node.lines(facts):
        report.add(name, status, reason, fix)
    for c in report.warnings:
        print(f"{WARN_PREFIX}{c.name}: {c.reason}", file=sys.stderr, flush=True)
    if any(c.status == "refused" for c in report.checks):
        raise RefusedError(f"check: node {rank}: {report.refusal()} (--no-check skips the checks)")


def _python(profile: Profile) -> str:
    return profile.python or sys.executable


# ---------------------------------------------------------------- profiles for this host

Verdict = Literal["runnable", "runnable with less context", "incompatible"]


@dataclass(frozen=True)
class HostFit:
    name: str
    verdict: Verdict
    why: str
    kv_cache_tokens: int | None
    weights_bytes: int | None
    max_model_len: int | None
    params: int | None = None  # the model's parameter count (its size, whatever its precision)
    fits_max_model_len: int | None = None  # "runnable with less context": the largest that fits

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def profiles_for_host(
    gpu: str | None = None,
    *,
    vllm_version: str | None = None,
    hardware: gpus.Hardware | None = None,
) -> list[HostFit]:
    """Every built-in profile judged against this host's GPUs (or `--gpu`), NIM-style."""
    if hardware is None:
        hardware = gpus.planned(gpu) if gpu else gpus.detect()
    fits = []
    for name in loader.builtin_names():
        prof = loader.load(name, environ={}).profile
        if hardware.count == 0 and not _is_cpu_profile(prof):
            fits.append(HostFit(name, "incompatible", "needs a GPU; none found", None, None, None))
            continue
        target = Target(vllm_version=vllm_version, python=_python(prof), check_port=False)
        try:
            report = run(prof, target, hardware)
        except ProfileError as e:
            fits.append(HostFit(name, "incompatible", e.message, None, None, None))
            continue
        shape = models.find(prof.model, revision=prof.revision)
        fits.append(replace(_judge(name, prof, report), params=shape.params if shape else None))
    return fits


def _judge(name: str, prof: Profile, report: Report) -> HostFit:
    f, s = report.fit, report.settings
    tokens = f.kv_cache_tokens if f else None
    weights = f.weights_bytes if f else None
    mml = s.max_model_len if s else prof.max_model_len
    refused = [c for c in report.checks if c.status == "refused"]
    if not refused:
        why = f"{tokens:,} KV tokens" if tokens is not None else "no GPU checks apply"
        return HostFit(name, "runnable", why, tokens, weights, mml)
    only_context = all(c.name == "memory fit" for c in refused) and report.suggested_max_model_len
    if only_context:
        why = f"fits with max_model_len <= {report.suggested_max_model_len}"
        return HostFit(name, "runnable with less context", why, tokens, weights, mml,
                       fits_max_model_len=report.suggested_max_model_len)  # fmt: skip
    return HostFit(name, "incompatible", refused[0].reason, tokens, weights, mml)


def choose_auto_profile(gpu: str | None = None, *, hardware: gpus.Hardware | None = None) -> str:
    """The best built-in profile for this host: one made for this GPU (its name says so: `l4`,
    `h100-tp2`) if it runs as written, else the largest model that does; between two profiles of
    the same model (h100 and h100-fp8), the one with the larger KV cache. Raises RefusedError when
    none runs."""
    if hardware is None:
        hardware = gpus.planned(gpu) if gpu else gpus.detect()
    fits = profiles_for_host(hardware=hardware)
    gpu_name = _norm(hardware.gpus[0].name) if hardware.gpus else ""
    runnable = [f for f in fits if f.verdict == "runnable"]
    if not runnable:
        reasons = "; ".join(f"{f.name}: {f.why}" for f in fits)
        raise RefusedError(f"--profile auto: no built-in profile runs here ({reasons})")

    def made_for_this_gpu(fit: HostFit) -> bool:
        return any(len(t) > 1 and t in gpu_name for t in fit.name.split("-"))

    return max(
        runnable,
        key=lambda f: (made_for_this_gpu(f), f.params or 0, f.kv_cache_tokens or 0),
    ).name


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _is_cpu_profile(prof: Profile) -> bool:
    return prof.model.startswith(BUILTIN_MODEL_PREFIX)


# ---------------------------------------------------------------- output


def _print_report(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    style = {"ok": "green", "warning": "yellow", "refused": "bold red"}
    table = Table("check", "result", "reason", "fix", box=None, pad_edge=False)
    for c in report.checks:
        table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", c.reason, c.fix)
    console = Console(width=160)
    console.print(table)
    f, s = report.fit, report.settings
    if f and s:
        console.print(
            f"fit: weights {f.weights_bytes / GiB:.2f} GiB, KV cache "
            f"{max(0, f.available_kv_bytes) / GiB:.2f} GiB = {f.kv_cache_tokens:,} tokens "
            f"({f.kv_bytes_per_token // 1024} KiB/token), "
            f"{f.max_concurrency:.2f} x max_model_len {s.max_model_len:,}",
            highlight=False,
        )


def print_host_fits(fits: list[HostFit], as_json: bool) -> None:
    if as_json:
        print(json.dumps([f.as_json() for f in fits], indent=2))
        return
    width = max((len(f.name) for f in fits), default=12)
    for f in fits:
        print(f"{f.name:<{width}} {f.verdict:<28} {f.why}")
