"""What every `serve` command shares: the error boundary and the --profile / --set options.

The command modules (`cli.py`, `preflight/commands.py`, `clients/commands.py`) import this; it
imports none of them, so the command modules form no cycle. `cli.py` registers every command.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from .errors import ExitCode, Interrupted, ServeError

P = ParamSpec("P")
R = TypeVar("R")

PROFILE_HELP = "built-in profile name or path to a YAML file (env SERVE_PROFILE)"
SET_HELP = "override a key: KEY=VALUE (dotted for sampling.*, env.*); repeatable"

ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p", help=PROFILE_HELP)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help=SET_HELP)]


def err(line: str) -> None:
    print(f"serve: {line}", file=sys.stderr, flush=True)


def profile_ref(profile: str | None) -> str:
    """--profile, else SERVE_PROFILE; a usage error (exit 2) when neither is given."""
    if profile:
        return profile
    from .settings import settings

    if ref := settings().profile:
        return ref
    raise typer.BadParameter(
        "give --profile NAME|PATH or set SERVE_PROFILE", param_hint="'--profile'"
    )


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn ServeError into one line + its exit code; never a traceback for a user error."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Interrupted as e:
            # a stop the user asked for is not an error: say what happened, keep 128 + signal
            err(e.message)
            raise typer.Exit(int(e.exit_code)) from None
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
