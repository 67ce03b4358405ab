"""An import budget by module list, not a timer: each fast command imports only what it runs.

`serve probe` runs in every container every 10-15 s (health checks): the standard library only;
`serve schema` and `serve profiles` print constants of the installation: no typer, no pydantic.
`render`, `validate`, `schema`, `profiles` and `--help` import none of the modules of the commands
they do not run (preflight's checks and tables, the deploy renderers, rehearse, the clients, the
supervisor, the custom server). benchmarks/cli_start.py measures the time these lists stand for."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest

from openai_server import cli
from tests.conftest import ROOT

# modules of commands that the fast ones below do not run
OTHER_COMMANDS = re.compile(
    r"openai_server\.(deploy|clients|rehearse|custom|launching|multinode\.|launch\.(supervisor|"
    r"diagnose|process|readiness)|preflight\.(commands|check|memory|rules|table|gpus))"
)
HEAVY = re.compile(r"^(typer|click|rich|pydantic|pydantic_core|httpx|yaml|openai_server\.cli)\b")


def imported(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "openai_server", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    names = [ln.rsplit("|", 1)[-1].strip() for ln in out.stderr.splitlines() if "|" in ln]
    assert names, out.stderr[-2000:]
    return names


@pytest.mark.parametrize(
    "args",
    [
        ["render", "-p", "phi3-t4"],
        ["render", "-p", "tiny-cpu", "--format", "json"],
        ["validate", "profiles/phi3-t4.yaml"],
        ["schema"],
        ["profiles"],
        ["--help"],
        ["launch", "--help"],
    ],
)
def test_fast_commands_import_no_other_command(args: list[str]) -> None:
    extra = sorted({m for m in imported(*args) if OTHER_COMMANDS.match(m)})
    assert extra == [], f"`serve {' '.join(args)}` imports {extra}"


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "--url", "http://127.0.0.1:9", "--timeout", "0.5"],
        ["probe", "--ready-file", "/nonexistent/ready"],
        ["probe", "--url=http://127.0.0.1:9", "--model=m", "--api-key-env=K", "--timeout=0.5"],
    ],
)
def test_probe_imports_the_standard_library_only(args: list[str]) -> None:
    heavy = sorted({m for m in imported(*args) if HEAVY.match(m)})
    assert heavy == [], f"`serve {' '.join(args)}` imports {heavy}"


@pytest.mark.parametrize(("args", "allowed"), [(["schema"], set()), (["profiles"], {"yaml"})])
def test_schema_and_profiles_import_neither_typer_nor_pydantic(
    args: list[str], allowed: set[str]
) -> None:
    heavy = sorted(
        {m for m in imported(*args) if HEAVY.match(m) and m.split(".")[0] not in allowed}
    )
    assert heavy == [], f"`serve {' '.join(args)}` imports {heavy}"


def test_a_lazy_commands_help_line_is_its_docstrings() -> None:
    import importlib

    for name, (module, function, line) in cli.LAZY.items():
        doc = inspect.getdoc(getattr(importlib.import_module(module), function)) or ""
        assert line == " ".join(doc.split("\n\n")[0].split()), name


def test_a_lazy_command_runs_with_its_own_options_and_help() -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    helped = runner.invoke(cli.app, ["deploy", "--help"])
    assert helped.exit_code == 0 and "--target" in helped.output, helped.output
    bad = runner.invoke(cli.app, ["check", "--profile"])
    assert bad.exit_code == 2, bad.output
