"""`serve fleet`: the command. The work is in spec.py (the file) and run.py (the processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fleet_cmd(
    file: Annotated[
        Path,
        typer.Option("--file", "-f", help="the fleet file: port, host, models (name -> profile)"),
    ],
    no_check: Annotated[
        bool, typer.Option("--no-check", help="skip each model's preflight checks (serve check)")
    ] = False,
) -> None:
    """Serve several models behind one OpenAI endpoint, each under its own launcher."""
    from .placement import check_host
    from .run import run_fleet
    from .spec import load_fleet

    fleet = load_fleet(file)
    if not no_check:
        check_host(fleet.members, fleet.source)  # before anything starts
    run_fleet(fleet, check=not no_check)
