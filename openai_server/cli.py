"""`serve`: thin typer commands over the modules. Errors become one line and a documented exit code.

Fast paths (render, validate, profiles, probe) import neither vLLM nor torch.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, ParamSpec, TypeVar

import typer

from . import loader, render
from .clients import commands as clients_commands
from .errors import ExitCode, NotReady, ProfileError, ServeError
from .preflight import commands as preflight_commands
from .profile import BUILTIN_MODEL_PREFIX, Profile

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Validate, render, launch and supervise vLLM's OpenAI server from typed profiles.",
)

P = ParamSpec("P")
R = TypeVar("R")

ProfileOpt = Annotated[
    str,
    typer.Option(
        "--profile",
        "-p",
        envvar="SERVE_PROFILE",
        help="built-in profile name or path to a YAML file",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a key: KEY=VALUE (dotted for sampling.*, env.*)"),
]


def err(line: str) -> None:
    print(f"serve: {line}", file=sys.stderr, flush=True)


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn ServeError into one line + its exit code; never a traceback for a user error."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ServeError as e:
            err(f"error: {e.message}")
            if e.detail:
                print("--- last lines of the server's output ---", file=sys.stderr)
                for line in e.detail:
                    print(f"  {line}", file=sys.stderr)
            raise typer.Exit(int(e.exit_code)) from None
        except KeyboardInterrupt:
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


AUTO = "auto"


def _resolve(profile: str, sets: list[str] | None) -> loader.Resolved:
    if profile == AUTO:
        # NIM-style: the best built-in profile for the GPUs NVML sees (tiny-cpu without GPUs)
        profile = preflight_commands.choose_auto_profile()
        err(f"--profile auto: chose {profile!r} (see `serve profiles --for-this-host`)")
    return loader.load(profile, sets=sets or [])


@app.command("render")
@handles_errors
def render_cmd(
    profile: ProfileOpt,
    set_: SetOpt = None,
    server: Annotated[
        Literal["openai", "custom"] | None,
        typer.Option(help="openai: vLLM's server; custom: our FastAPI SSE server"),
    ] = None,
    fmt: Annotated[
        Literal["shell", "json"], typer.Option("--format", help="shell: one line; json: argv+env")
    ] = "shell",
    explain: Annotated[
        bool, typer.Option("--explain", help="show each effective value and where it came from")
    ] = False,
) -> None:
    """Print the exact vLLM command for a profile (nothing is started)."""
    resolved = _resolve(profile, [*(set_ or []), *([f"server={server}"] if server else [])])
    command = render.render(resolved.profile, python=sys.executable)
    if explain:
        _explain(resolved)
        return
    if fmt == "json":
        print(json.dumps(command.as_json(), indent=2))
    else:
        print(command.shell_line())


def _explain(resolved: loader.Resolved) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("key", "value", "from", box=None, pad_edge=False)
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
        shown = "(vLLM default)" if value is None else repr(value)
        table.add_row(key, shown, resolved.source_of(key))
    Console(width=200).print(table)


@app.command("validate")
@handles_errors
def validate_cmd(
    files: Annotated[list[Path], typer.Argument(help="profile files ('-' reads stdin)")],
) -> None:
    """Strictly check profile files; stop with exit 3 at the first bad one."""
    for file in files:
        if str(file) == "-":
            loader.load_text(sys.stdin.read(), "<stdin>")
            print("ok: <stdin>")
            continue
        loader.load(str(file) if "/" in str(file) else f"./{file}", environ={})
        print(f"ok: {file}")


@app.command("profiles")
@handles_errors
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
        fits = preflight_commands.profiles_for_host(gpu)
        if as_json:
            print(json.dumps([f.as_json() for f in fits], indent=2))
        for f in [] if as_json else fits:
            print(f"{f.name:<14} {f.verdict:<28} {f.why}")
        return
    for name in loader.builtin_names():
        resolved = loader.load(name, environ={})
        print(f"{name:<14} {resolved.profile.description}")


@app.command("schema")
@handles_errors
def schema_cmd() -> None:
    """Print the profile JSON Schema (committed as profiles/schema.json)."""
    print(profile_schema_json(), end="")


def profile_schema_json() -> str:
    schema = Profile.model_json_schema()
    schema["title"] = "serve profile"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


@app.command("probe")
@handles_errors
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
) -> None:
    """Exit 0 when the endpoint lists the model (for HEALTHCHECK / exec probes), else 8."""
    import httpx

    from .probe import base_url_for, check_models

    if profile is not None:
        prof = _resolve(profile, set_).profile
        url = url or base_url_for(prof.host, prof.effective_port)
        model = model or prof.model_id
        api_key_env = api_key_env or prof.api_key_env
    url = url or "http://127.0.0.1:8000"
    api_key = os.environ.get(api_key_env) if api_key_env else None
    deadline = time.monotonic() + wait
    with httpx.Client(timeout=timeout) as client:
        while True:
            result = check_models(client, url, model, api_key)
            if result.ready:
                print(f"ready: {url} lists {', '.join(result.models)}")
                return
            if time.monotonic() >= deadline:
                raise NotReady(result.reason)
            time.sleep(0.2)


@app.command("launch")
@handles_errors
def launch_cmd(
    profile: ProfileOpt,
    set_: SetOpt = None,
    server: Annotated[
        Literal["openai", "custom"] | None,
        typer.Option(help="openai: vLLM's server; custom: our FastAPI SSE server"),
    ] = None,
    ready_timeout: Annotated[
        float, typer.Option(help="seconds to wait for ready before killing the group")
    ] = 1800.0,
    stall_timeout: Annotated[
        float,
        typer.Option(help="start-up is hung after this long with no output, phase or CPU (0: off)"),
    ] = 300.0,
    grace: Annotated[
        float, typer.Option(help="seconds between SIGTERM and SIGKILL when stopping")
    ] = 30.0,
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
    health_interval: Annotated[float, typer.Option(help="seconds between /health checks")] = 5.0,
    deep_probe_interval: Annotated[
        float, typer.Option(help="seconds between one-token liveness completions (0: off)")
    ] = 0.0,
    deep_probe_timeout: Annotated[
        float, typer.Option(help="a deep probe slower than this means the engine hangs")
    ] = 30.0,
    restart_limit: Annotated[
        int, typer.Option(help="give up after this many restarts within 10 minutes")
    ] = 5,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="skip the preflight checks (serve check)")
    ] = False,
    smoke: Annotated[
        bool, typer.Option("--smoke", help="run `serve smoke` right after ready; fail if it fails")
    ] = False,
) -> None:
    """Validate, check, render, start and supervise the server until it is stopped or fails."""
    from . import launch, tiny
    from .probe import base_url_for
    from .report import Reporter

    sets = list(set_ or [])
    if server:
        sets.append(f"server={server}")
    resolved = _resolve(profile, sets)
    prof = resolved.profile
    if not no_check:
        preflight_commands.before_launch(prof, python=sys.executable)
    if prof.model.startswith(BUILTIN_MODEL_PREFIX):
        tiny.ensure()
    command = render.render(prof, python=sys.executable)
    api_key = None
    if prof.api_key_env:
        api_key = os.environ.get(prof.api_key_env)
        if not api_key:
            raise ProfileError(
                f"api_key_env: the environment variable {prof.api_key_env} is not set or empty"
            )
    opts = launch.LaunchOptions(
        base_url=base_url_for(prof.host, prof.effective_port),
        model_id=prof.model_id,
        model=render.model_path(prof),
        api_key=api_key,
        custom_server=prof.server == "custom",
        ready_timeout=ready_timeout,
        # vLLM drains for --shutdown-timeout on SIGTERM: never SIGKILL it in the middle of that
        grace=grace if prof.shutdown_timeout is None else max(grace, prof.shutdown_timeout + 10),
        ready_file=ready_file,
        stall_timeout=stall_timeout,
        health_interval=health_interval,
        deep_probe_interval=deep_probe_interval,
        deep_probe_timeout=deep_probe_timeout,
        restart=prof.restart,
        restart_limit=restart_limit,
    )
    mode: Literal["plain", "json", "rich"] = (
        "json" if log_format == "json" else "plain" if log_format == "plain" else "rich"
    )
    if mode == "rich" and (verbose or not sys.stdout.isatty()):
        mode = "plain"
    log = log_file.open("a", buffering=1) if log_file else None
    ui = Reporter(mode, verbose=verbose, log_file=log)
    origin = loader.display(resolved.path) if resolved.path else profile
    ui.event("command", f"profile {origin}: {command.shell_line()}", argv=command.argv)
    on_ready = (
        (lambda: clients_commands.after_ready(opts.base_url, opts.model_id, api_key))
        if smoke
        else None
    )
    try:
        launch.run(command, opts, ui, on_ready=on_ready)
    except ServeError as e:
        if e.detail:
            ui.detail("relevant lines of the server's output", e.detail)
            e.detail = []
        raise
    finally:
        if log is not None:
            log.close()


# Commands owned by other modules (their heavy imports stay inside the commands).
preflight_commands.register(app)
clients_commands.register(app)


def main() -> None:
    app()
