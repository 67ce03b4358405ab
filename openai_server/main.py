"""The `serve` console script: `serve probe` answered before anything heavy is imported.

A health check runs `serve probe` every 10 to 15 s in every container for as long as it lives;
importing the CLI (typer, rich, pydantic) for it would cost 3x the probe's own work. So the probe's
common forms (--url/--model/--api-key-env/--ready-file) run on the standard library
(openai_server/probe.py); any other command or option goes to the typer CLI.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["probe"]:
        from .probe import fast

        code = fast(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    from .cli import main as cli_main

    cli_main()
