"""`serve`: thin typer commands over the modules. Errors become one line and a documented exit code.

Fast paths (render, validate, profiles, schema, probe, --help) import neither vLLM nor torch, nor
the modules of the commands they do not run: check, deploy, rehearse, smoke, chat and bench are
registered by name (LAZY) and imported when run. `serve probe` itself runs before this module is
imported where it can (openai_server/main.py).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from . import multinode, ports
from .cli_common import ProfileOpt, SetOpt, err, handles_errors, profile_ref
from .errors import NotReady
from .launch.options import Timing
from .launch.restart import RESTART_LIMIT

if TYPE_CHECKING:
    from . import loader, render

# The profile, its loader and renderer (pydantic: 0.07 s of model building) are imported by the
# commands that read a profile, not by `serve --help` or the lazy commands' start.
DEFAULTS = Timing()  # the launcher's timing defaults, defined once (launch/options.py)

# The commands whose modules are heavy to import (preflight's tables, the deploy renderers, the
# load generator): name -> (module, function, the line `serve --help` shows). Imported when run or
# asked for their own --help; tests/test_cli_imports.py holds each line to its docstring.
LAZY = {
    "check": ("openai_server.preflight.commands", "check_cmd",
              "Check a profile before launch: vLLM flags, GPU, memory fit (exit 0 ok, 4 refused)."),
    "deploy": ("openai_server.deploy.commands", "deploy_cmd",
               "Render deployment files for a profile (after the same preflight as launch)."),
    "rehearse": ("openai_server.rehearse.commands", "rehearse_cmd",
                 "Serve the profile's model shape with dummy weights; report KV, phases, bench; "
                 "stop."),
    "cache": ("openai_server.cache_commands", "cache_cmd",
              "Pack what a start of a profile compiled into one file; restore it; list what is "
              "cached."),
    "smoke": ("openai_server.clients.commands", "smoke_cmd",
              "Prove the endpoint answers: model listed, a streamed chat with chunks, finish and "
              "usage."),
    "chat": ("openai_server.clients.commands", "chat_cmd",
             "Interactive streaming chat. Ctrl-C stops an answer, Ctrl-D or /exit quits."),
    "fleet": ("openai_server.fleet.commands", "fleet_cmd",
              "Serve several models behind one OpenAI endpoint, each under its own launcher."),
    "bench": ("openai_server.clients.commands", "bench_cmd",
              "Load-test the endpoint; figures defined as in `vllm bench serve` (TTFT, TPOT, ITL, "
              "...)."),
    "top": ("openai_server.top.commands", "top_cmd",
            "Watch a running server and this host's GPUs live (--once --json: one snapshot)."),
}  # fmt: skip


def run_lazy(name: str, args: list[str], prog_name: str) -> None:
    """Import the command `name` of LAZY and run it with `args` (its --help included)."""
    import importlib

    module, function, _ = LAZY[name]
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    one.command(name)(handles_errors(getattr(importlib.import_module(module), function)))
    one(args, prog_name=prog_name)


def _lazy(name: str) -> Callable[[typer.Context], None]:
    def command(ctx: typer.Context) -> None:
        run_lazy(name, ctx.args, ctx.command_path)

    command.__doc__ = LAZY[name][2]
    return command


# everything after the name goes to the command itself, --help included
PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


# Plain help and usage errors (click's), not rich panels: rich costs 0.08 s of import, half of
# `serve --help`, and plain lines read as well in a terminal as in a CI or container log.
app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Validate, render, launch and supervise vLLM's OpenAI server from typed profiles.",
)
ServerOpt = Annotated[
    Literal["openai", "custom"] | None,
    typer.Option(help="openai: vLLM's server; custom: our FastAPI SSE server"),
]

AUTO = "auto"


def _resolve(profile: str | None, sets: list[str] | None) -> loader.Resolved:
    from . import loader

    profile = profile_ref(profile)
    if profile == AUTO:
        # NIM-style: the best built-in profile for the GPUs NVML sees (tiny-cpu without GPUs)
        from .preflight.commands import choose_auto_profile

        profile = choose_auto_profile()
        err(f"--profile auto: chose {profile!r} (see `serve profiles --for-this-host`)")
    return loader.load(profile, sets=sets or [])


def render_cmd(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    server: ServerOpt = None,
    fmt: Annotated[
        Literal["shell", "json"], typer.Option("--format", help="shell: one line; json: argv+env")
    ] = "shell",
    explain: Annotated[
        bool, typer.Option("--explain", help="show each effective value and where it came from")
    ] = False,
) -> None:
    """Print the exact vLLM command for a profile (nothing is started)."""
    from . import render
    from .preflight.flags import target_vllm

    resolved = _resolve(profile, [*(set_ or []), *([f"server={server}"] if server else [])])
    vllm = target_vllm(resolved.profile.python or sys.executable)
    command = render.render(resolved.profile, python=sys.executable, vllm=vllm, environ=os.environ)
    if explain:
        _explain(resolved, render.entry_for(resolved.profile, vllm))
        return
    if fmt == "json":
        print(json.dumps(command.as_json(), indent=2))
    else:
        print(command.shell_line())


def _explain(resolved: loader.Resolved, entry: render.Entry) -> None:
    from rich.console import Console
    from rich.table import Table

    from . import loader, render
    from .multicast import all_reduce
    from .profile import Profile

    table = Table(box=None, pad_edge=False)
    table.add_column("key", no_wrap=True)
    table.add_column("value", max_width=60, overflow="fold")  # a long description wraps
    table.add_column("from")
    values = resolved.profile.model_dump()
    for key in Profile.model_fields:
        value = values[key]
        if isinstance(value, dict) and key in loader.MERGED_MAPPINGS:
            if not value:
                table.add_row(key, "{}", resolved.source_of(key))
            for sub, subvalue in value.items():
                if subvalue is None:
                    continue
                table.add_row(f"{key}.{sub}", repr(subvalue), resolved.source_of(f"{key}.{sub}"))
            continue
        # a key that is not a vLLM flag (extends, nodes, nvlink_multicast...) has no vLLM default
        unset = "(unset)" if key in render.NOT_FLAGS else "(vLLM default)"
        shown = unset if value is None else repr(value)
        table.add_row(key, shown, resolved.source_of(key))
    table.add_row("entry point", " ".join(["-m", entry.module, *entry.subcommand]), entry.why)
    reduce = all_reduce(resolved.profile, os.environ)
    shown = " ".join([*reduce.args, *(f"{k}={v}" for k, v in reduce.env.items())]) or "vLLM's own"
    table.add_row("all-reduce", shown, reduce.why)
    Console(width=200).print(table)


def validate_cmd(
    files: Annotated[list[Path], typer.Argument(help="profile files ('-' reads stdin)")],
) -> None:
    """Strictly check profile files; stop with exit 3 at the first bad one."""
    from . import loader

    for file in files:
        if str(file) == "-":
            loader.load_text(loader.read_stream(sys.stdin.buffer, "<stdin>"), "<stdin>")
            print("ok: <stdin>")
            continue
        loader.load(str(file) if "/" in str(file) else f"./{file}", environ={})
        print(f"ok: {file}")


def profiles_cmd(
    for_this_host: Annotated[
        bool,
        typer.Option(
            "--for-this-host", help="runnable / runnable with less context / incompatible, and why"
        ),
    ] = False,
    gpu: Annotated[
        str | None, typer.Option(help="with --for-this-host: plan for NAME[:COUNT] instead")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="with --for-this-host: as JSON")] = False,
) -> None:
    """List the built-in profiles (or judge each against this host's GPUs)."""
    if for_this_host or gpu:
        from .preflight.commands import print_host_fits, profiles_for_host

        print_host_fits(profiles_for_host(gpu), as_json)
        return
    from .profile_files import profiles_text

    print(profiles_text(), end="")


def schema_cmd() -> None:
    """Print the profile JSON Schema (committed as profiles/schema.json)."""
    from .catalog import schema_text

    print(schema_text(), end="")


def profile_schema_json() -> str:
    """The schema as the Profile model generates it (`serve schema` prints the committed copy)."""
    from .profile import Profile

    schema = Profile.model_json_schema()
    schema["title"] = "serve profile"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def probe_cmd(
    url: Annotated[
        str | None, typer.Option(help="base URL, e.g. http://127.0.0.1:8000 (default: 8000)")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="take URL, model and API key variable from a profile"),
    ] = None,
    set_: SetOpt = None,
    model: Annotated[str | None, typer.Option(help="require this model id")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="environment variable that holds the API key")
    ] = None,
    wait: Annotated[float, typer.Option(help="keep probing up to this many seconds")] = 0.0,
    timeout: Annotated[float, typer.Option(help="seconds per HTTP request")] = 2.0,
    ready_file: Annotated[
        Path | None,
        typer.Option(help="probe what a launcher's --ready-file names (missing: not ready)"),
    ] = None,
) -> None:
    """Exit 0 when the endpoint lists the model (for HEALTHCHECK / exec probes), else 8.

    Without --profile/--set it runs before the CLI is imported (openai_server/main.py)."""
    from . import probe
    from .launch.readiness import base_url_for

    if ready_file is not None:
        target = probe.from_ready_file(ready_file)
        if isinstance(target, str):
            raise NotReady(target)
        url, model = url or target.url, model or target.model
        api_key_env = api_key_env or target.api_key_env
    if profile is not None:
        prof = _resolve(profile, set_).profile
        url = url or base_url_for(prof.host, prof.effective_port)
        model = model or prof.model_id
        api_key_env = api_key_env or prof.api_key_env
    url = url or probe.DEFAULT_URL
    api_key = os.environ.get(api_key_env) if api_key_env else None
    result = probe.probe(url, model, api_key, wait=wait, timeout=timeout)
    if not result.ready:
        raise NotReady(result.reason)
    print(f"ready: {url} lists {', '.join(result.models)}")


def launch_cmd(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    server: ServerOpt = None,
    ready_timeout: Annotated[
        float, typer.Option(help="seconds to wait for ready before killing the group")
    ] = DEFAULTS.ready_timeout,
    stall_timeout: Annotated[
        float,
        typer.Option(help="start-up is hung after this long with no output, phase or CPU (0: off)"),
    ] = DEFAULTS.stall_timeout,
    grace: Annotated[
        float, typer.Option(help="seconds between SIGTERM and SIGKILL when stopping")
    ] = DEFAULTS.grace,
    ready_file: Annotated[
        Path | None, typer.Option(help="written when ready (removed on exit)")
    ] = None,
    log_format: Annotated[
        Literal["auto", "plain", "json"],
        typer.Option(help="auto: live display on a terminal, else plain lines; json: events"),
    ] = "auto",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="also show the server's raw output (stderr)")
    ] = False,
    log_file: Annotated[
        Path | None, typer.Option(help="append the server's raw output to this file")
    ] = None,
    health_interval: Annotated[
        float, typer.Option(help="seconds between /health checks")
    ] = DEFAULTS.health_interval,
    deep_probe_interval: Annotated[
        float, typer.Option(help="seconds between one-token liveness completions (0: off)")
    ] = DEFAULTS.deep_probe_interval,
    deep_probe_timeout: Annotated[
        float, typer.Option(help="a deep probe slower than this means the engine hangs")
    ] = DEFAULTS.deep_probe_timeout,
    restart_limit: Annotated[
        int, typer.Option(help="give up after this many restarts within 10 minutes")
    ] = RESTART_LIMIT,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="skip the preflight checks (serve check)")
    ] = False,
    smoke: Annotated[
        bool, typer.Option("--smoke", help="run `serve smoke` right after ready; fail if it fails")
    ] = False,
    node_rank: Annotated[
        int | None,
        typer.Option(help="nodes > 1: this node's rank (0: the head, which serves the API)", min=0),
    ] = None,
    head_address: Annotated[
        str | None,
        typer.Option(
            help="nodes > 1: node 0's address as every node reaches it (default: the profile's "
            "master_addr or data_parallel_address)"
        ),
    ] = None,
    join_timeout: Annotated[
        float, typer.Option(help="nodes > 1: seconds for every node to join the head")
    ] = multinode.JOIN_TIMEOUT_S,
    control_port: Annotated[
        int, typer.Option(help="nodes > 1: the port the head's launcher listens on for the others")
    ] = ports.CONTROL,
    record_compile: Annotated[
        bool,
        typer.Option(
            help="once ready, record what the start wrote in the compile caches, for `serve "
            "cache pack` (a rehearsal's start does not: its model is a generated directory)",
            hidden=True,
        ),
    ] = True,
) -> None:
    """Validate, check, render, start and supervise the server until it is stopped or fails.

    Over several nodes: the same command on every node with its --node-rank and --head-address;
    node 0 waits until all have joined, then serves."""
    from . import loader
    from .launching import LaunchRequest, launch

    resolved = _resolve(profile, [*(set_ or []), *([f"server={server}"] if server else [])])
    origin = loader.display(resolved.path) if resolved.path else profile_ref(profile)
    timing = Timing(ready_timeout=ready_timeout, stall_timeout=stall_timeout, grace=grace,
                    health_interval=health_interval, deep_probe_interval=deep_probe_interval,
                    deep_probe_timeout=deep_probe_timeout)  # fmt: skip
    launch(LaunchRequest(
        resolved.profile, origin, timing, restart_limit=restart_limit, ready_file=ready_file,
        log_format=log_format, verbose=verbose, log_file=log_file, check=not no_check,
        smoke=smoke, node_rank=node_rank, head_address=head_address,
        join_timeout=join_timeout, control_port=control_port, record_compile=record_compile,
    ))  # fmt: skip


# The whole command surface, in one place, in `serve --help`'s order. Heavy imports stay inside the
# commands; those of LAZY are imported only when run.
def lazy(name: str) -> None:
    app.command(
        name, context_settings=PASS_THROUGH, add_help_option=False, short_help=LAZY[name][2]
    )(_lazy(name))


def command(name: str, fn: Callable[..., None]) -> None:
    # the docstring's first paragraph whole in the command list (click cuts it at 45 characters)
    short = " ".join((fn.__doc__ or "").split("\n\n")[0].split())
    app.command(name, short_help=short)(handles_errors(fn))


command("render", render_cmd)
command("validate", validate_cmd)
command("profiles", profiles_cmd)
command("schema", schema_cmd)
lazy("check")
command("probe", probe_cmd)
lazy("deploy")
command("launch", launch_cmd)
lazy("rehearse")
lazy("cache")
lazy("fleet")
lazy("smoke")
lazy("chat")
lazy("bench")
lazy("top")


def main() -> None:
    app()
