"""The committed JSON Schema matches the model; the CLI maps errors to one line and an exit code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from openai_server.cli import app, profile_schema_json
from openai_server.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_committed_schema_matches_the_model() -> None:
    committed = (ROOT / "profiles" / "schema.json").read_text()
    assert committed == profile_schema_json(), "run: serve schema > profiles/schema.json"


def test_schema_forbids_unknown_keys() -> None:
    schema = json.loads(profile_schema_json())
    assert schema["additionalProperties"] is False


def test_render_json_gives_argv() -> None:
    result = runner.invoke(app, ["render", "-p", "phi3-t4", "--format", "json"])
    assert result.exit_code == 0, result.output
    argv = json.loads(result.stdout)["argv"]
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]


def test_render_explain_names_sources() -> None:
    result = runner.invoke(
        app, ["render", "-p", "phi3-t4", "--set", "max_num_seqs=32", "--explain"]
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"max_num_seqs\s+32\s+--set max_num_seqs=32", result.stdout)
    assert re.search(r"dtype\s+'half'\s+profiles/phi3-t4.yaml:\d+", result.stdout)


def test_invalid_set_exits_with_profile_code_and_one_line() -> None:
    result = runner.invoke(app, ["render", "-p", "phi3-t4", "--set", "dtype=bf16"])
    assert result.exit_code == ExitCode.PROFILE
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("serve: error: --set dtype=bf16: dtype: 'bf16'")


def test_validate_stops_at_first_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("model: m\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\nmax_num_seqs: -1\n")
    result = runner.invoke(app, ["validate", str(good), str(bad), str(good)])
    assert result.exit_code == ExitCode.PROFILE
    assert result.stdout.count("ok:") == 1
    assert "bad.yaml:2: max_num_seqs: -1 is not allowed" in result.stderr


def test_validate_builtin_profiles_pass() -> None:
    files = [str(p) for p in sorted((ROOT / "profiles").glob("*.yaml"))]
    result = runner.invoke(app, ["validate", *files])
    assert result.exit_code == 0, result.output


def test_profiles_lists_builtins_with_descriptions() -> None:
    result = runner.invoke(app, ["profiles"])
    assert result.exit_code == 0
    assert re.search(r"^tiny-cpu\s+\S", result.stdout, re.M)
    assert re.search(r"^phi3-t4\s+\S", result.stdout, re.M)


def test_profiles_and_schema_without_options_print_what_the_commands_print() -> None:
    # main.py answers these two before the CLI is imported; the text must be the commands' own
    from openai_server import loader

    printed = {}
    for args in (["profiles"], ["schema"]):
        fast = subprocess.run(
            [sys.executable, "-m", "openai_server", *args],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        typed = runner.invoke(app, args)
        assert fast.returncode == 0 == typed.exit_code, fast.stderr
        assert fast.stdout == typed.stdout and fast.stderr == "", args
        printed[args[0]] = fast.stdout
    assert printed["schema"] == profile_schema_json()
    # the listing reads descriptions without validating: each is the validated profile's own
    listed = dict(line.split(maxsplit=1) for line in printed["profiles"].splitlines())
    for name in loader.builtin_names():
        assert listed[name] == loader.load(name, environ={}).profile.description, name


def test_probe_against_nothing_is_not_ready() -> None:
    result = runner.invoke(app, ["probe", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == ExitCode.NOT_READY
    assert "connection refused" in result.stderr


def test_readme_exit_code_table_matches_exit_codes() -> None:
    readme = (ROOT / "README.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \| `{code.name}` \|", readme, re.M), code.name


def test_profiles_for_a_planned_gpu_are_judged() -> None:
    result = runner.invoke(app, ["profiles", "--for-this-host", "--gpu", "T4"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^phi3-t4\s+runnable\s", result.stdout, re.M)
    assert re.search(r"^h100-tp2\s+incompatible\s", result.stdout, re.M)


def test_auto_profile_on_a_host_without_gpus_is_tiny_cpu() -> None:
    result = runner.invoke(app, ["render", "-p", "auto"])
    assert result.exit_code == 0, result.output
    assert "chose 'tiny-cpu'" in result.stderr
    assert "--served-model-name tiny-phi3" in result.stdout
