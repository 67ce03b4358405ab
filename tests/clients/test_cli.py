"""`serve smoke/chat/bench` on the command line, where no server is needed: one line, exit 9."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openai_server.cli import app
from openai_server.errors import ExitCode
from tests.conftest import free_port

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        ["smoke"],
        ["smoke", "--json"],
        ["bench", "--num-prompts", "2"],
        ["chat"],
    ],
)
def test_connection_refused_is_one_line_and_exit_9(command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, [*command, "--url", url], input="")
    assert result.exit_code == ExitCode.CLIENT, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("serve: error:") and "refused" in errors[0]
    assert "Traceback" not in result.output + result.stderr


def test_smoke_json_failure_is_a_json_object() -> None:
    result = runner.invoke(app, ["smoke", "--json", "--url", f"http://127.0.0.1:{free_port()}"])
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["kind"] == "connection refused"


def test_unset_api_key_variable_is_refused_before_any_request() -> None:
    result = runner.invoke(
        app, ["smoke", "--url", "http://127.0.0.1:9", "--api-key-env", "SERVE_NO_SUCH_VAR"]
    )
    assert result.exit_code == ExitCode.CLIENT
    assert "SERVE_NO_SUCH_VAR is not set" in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--slo", "ttft=fast"], "not a duration"),
        (["--sweep", "1,x"], "x"),
        (["--sweep", "0,4"], ">= 1"),
    ],
)
def test_bad_bench_options_are_usage_errors(args: list[str], says: str) -> None:
    result = runner.invoke(app, ["bench", "--url", "http://127.0.0.1:9", *args])
    assert result.exit_code == ExitCode.USAGE
    assert says in result.output + result.stderr


def test_compare_prints_two_result_files_side_by_side(tmp_path: Path) -> None:
    a = {"output_throughput": 100.0, "mean_ttft_ms": 20.0, "completed": 8}
    b = {"output_throughput": 110.0, "mean_ttft_ms": 10.0, "completed": 8}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps([b]))  # a one-run list is accepted too
    result = runner.invoke(
        app, ["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("output token"))
    assert row.split()[-3:] == ["100.00", "110.00", "1.100"]
    assert "0.500" in next(line for line in result.stdout.splitlines() if "mean TTFT" in line)


def test_compare_refuses_a_file_that_is_not_a_result(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    result = runner.invoke(
        app, ["bench", "--compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")]
    )
    assert result.exit_code == ExitCode.CLIENT
    assert "not the result of one benchmark run" in result.stderr
