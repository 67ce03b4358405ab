"""The `serve` console script: what runs most often is answered before anything heavy is imported.

A health check runs `serve probe` every 10 to 15 s in every container for as long as it lives;
importing the CLI (typer, rich, pydantic) for it would cost 3x the probe's own work. So the probe's
common forms (--url/--model/--api-key-env/--ready-file) run on the standard library
(openai_server/probe.py). `serve schema` and `serve profiles` without options print constants of
the installation (catalog.py, profile_files.py): typer 0.29 builds a pydantic TypeAdapter for
every option of the command it runs, --help included (typer/_coercion.py `build_runtime_param`),
0.1 s before any work.
Any other command or option, and any error, goes to the typer CLI, which says it as usual.
"""

from __future__ import annotations

import sys

from .errors import ServeError


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["probe"]:
        from .probe import fast

        code = fast(args)
        if code is not None:
            sys.exit(code)
    elif args in (["schema"], ["profiles"]):
        try:
            text = _schema() if args == ["schema"] else _profiles()
        except (ServeError, OSError):
            pass  # the CLI's command meets the same error and says it in one line
        else:
            sys.stdout.write(text)
            return
    from .cli import main as cli_main

    cli_main()


def _schema() -> str:
    from .catalog import schema_text

    return schema_text()


def _profiles() -> str:
    from .profile_files import profiles_text  # PyYAML, which `serve schema` does not need

    return profiles_text()
