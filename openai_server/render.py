"""Profile -> the vLLM server command. Pure: no I/O, no environment, no vLLM import.

Where a profile key becomes a vLLM flag, and back: `flag()` and `key_of()` are the one rule
(`max_num_seqs` <-> `--max-num-seqs`, a false boolean `--no-...`), used by the renderer, by the
preflight flag check and by failure diagnosis.

The command is an argv list (no shell anywhere). Booleans are explicit (`--flag` / `--no-flag`), so
a `false` in a profile is never silently dropped. The API key never appears in argv (it would show
in `ps` and in logs): vLLM reads it from VLLM_API_KEY, which the launcher fills from the variable
the profile names.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from . import tiny
from .launch.command import Command
from .profile import BUILTIN_MODEL_PREFIX, Profile

OPENAI_MODULE = "vllm.entrypoints.openai.api_server"
CUSTOM_MODULE = "openai_server.custom"
# Profile keys that are not vLLM flags, or that are rendered specially below.
NOT_FLAGS = {
    "description",
    "extends",
    "sampling",
    "server",
    "api_key_env",
    "python",
    "env",
    "extra_args",
    "restart",
    "port",
}
BUILTIN_MODELS = {"tiny-phi3"}
# vLLM reads the key from here when --api-key is absent (0.26 to 0.33).
VLLM_API_KEY_VAR = "VLLM_API_KEY"


def model_path(profile: Profile, cache_dir: Path | None = None) -> str:
    """The model argument vLLM gets: built-in models map to their generated directory."""
    if profile.model.startswith(BUILTIN_MODEL_PREFIX):
        name = profile.model.removeprefix(BUILTIN_MODEL_PREFIX)
        if name not in BUILTIN_MODELS:
            raise ValueError(f"unknown built-in model {name!r}; built-in: {sorted(BUILTIN_MODELS)}")
        return str(tiny.model_dir(cache_dir))
    return profile.model


def flag(key: str, value: bool = True) -> str:
    """Profile key -> vLLM flag: `max_num_seqs` -> `--max-num-seqs`; `value=False` -> `--no-...`
    (vLLM's BooleanOptionalAction spelling)."""
    return ("--" if value else "--no-") + key.replace("_", "-")


def key_of(option: str, keys: Collection[str] | None = None) -> str:
    """vLLM flag -> profile key: `--max-model-len=4096` -> `max_model_len`. `--no-x` -> `x` when
    `x` is one of `keys` (default: the profile's keys), else `no_x` (a flag of its own)."""
    key = option.split("=", 1)[0].lstrip("-").replace("-", "_")
    known = Profile.model_fields if keys is None else keys
    base = key.removeprefix("no_")
    return base if base != key and base in known else key


def engine_args(profile: Profile, cache_dir: Path | None = None) -> list[str]:
    """The engine and server flags, in profile field order, skipping unset (vLLM default) keys."""
    args: list[str] = []
    values = profile.model_dump()
    for key in Profile.model_fields:
        value = values[key]
        if key in NOT_FLAGS or value is None:
            continue
        if key == "model":
            value = model_path(profile, cache_dir)
        if isinstance(value, bool):
            args.append(flag(key, value))
        elif isinstance(value, dict):
            args += [flag(key), json.dumps(value, sort_keys=True, separators=(",", ":"))]
        else:
            args += [flag(key), str(value)]
    if profile.served_model_name is None and profile.model.startswith(BUILTIN_MODEL_PREFIX):
        # clients should see "tiny-phi3", not a cache path
        args += ["--served-model-name", profile.model_id]
    args += ["--port", str(profile.effective_port)]
    overrides = sampling_overrides(profile)
    if overrides:
        args += [
            "--override-generation-config",
            json.dumps(overrides, sort_keys=True, separators=(",", ":")),
        ]
    return args + list(profile.extra_args)


def sampling_overrides(profile: Profile) -> dict[str, Any]:
    """Profile sampling -> vLLM generation-config keys (HF names: max_tokens is max_new_tokens)."""
    out = {k: v for k, v in profile.sampling.model_dump().items() if v is not None}
    if "max_tokens" in out:
        out["max_new_tokens"] = out.pop("max_tokens")
    return out


def render(profile: Profile, *, python: str, cache_dir: Path | None = None) -> Command:
    """The full command for the profile's server kind."""
    module = OPENAI_MODULE if profile.server == "openai" else CUSTOM_MODULE
    interpreter = profile.python or python
    argv = [interpreter, "-m", module, *engine_args(profile, cache_dir)]
    env_from = {VLLM_API_KEY_VAR: profile.api_key_env} if profile.api_key_env else {}
    return Command(argv=argv, env=dict(profile.env), env_from=env_from)
