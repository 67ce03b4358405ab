"""`serve check` end to end through the CLI (typer's CliRunner), and the launch hook."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from openai_server import loader
from openai_server.cli import app
from openai_server.errors import ExitCode, RefusedError
from openai_server.preflight import commands, gpus


@pytest.fixture(autouse=True)
def _isolated_flag_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVE_FLAGS_CACHE", str(tmp_path / "flags"))


def check(*args: str):
    return CliRunner().invoke(app, ["check", *args])


def test_phi3_t4_passes_on_a_planned_t4():
    """Passes with the fit computed from the model's shape (not a warning that it could not be):
    Phi-3-mini's 3.82 B parameters, 7.12 GiB, and a KV cache of some 12,000 tokens on 14.75 GiB."""
    result = check("--profile", "phi3-t4", "--gpu", "T4", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert (
        checks["model"]["status"] == "ok"
        and "Phi3ForCausalLM: 32 layers" in checks["model"]["reason"]
    )
    assert checks["weights"]["status"] == "ok" and checks["weights"]["reason"].startswith(
        "7.12 GiB"
    )
    assert checks["memory fit"]["status"] == "ok"
    assert f"{data['kv_cache_tokens']:,} tokens" in checks["memory fit"]["reason"]
    assert 11_000 < data["kv_cache_tokens"] < 14_000 and data["weights_bytes"] == 7_642_000_000


def test_bfloat16_on_t4_is_refused_and_names_half():
    result = check("--profile", "phi3-t4", "--gpu", "T4", "--set", "dtype=bfloat16")
    assert result.exit_code == ExitCode.REFUSED
    assert "half" in result.output


def test_phi3_128k_at_full_context_on_t4_is_refused_with_a_max_model_len():
    result = check(
        "--profile", "phi3-t4", "--gpu", "T4", "--json",
        "--set", "model=microsoft/Phi-3-mini-128k-instruct", "--set", "max_model_len=131072",
    )  # fmt: skip
    assert result.exit_code == ExitCode.REFUSED
    data = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert data["ok"] is False and 8192 < data["suggested_max_model_len"] < 131072
    assert f"max_model_len <= {data['suggested_max_model_len']}" in result.output


def test_json_has_the_fit_numbers():
    result = check("--profile", "phi3-t4", "--gpu", "T4", "--json")
    data = json.loads(result.stdout)
    for key in ("kv_cache_tokens", "max_concurrency_at_max_model_len", "weights_bytes"):
        assert data[key] > 0, key
    assert data["kv_cache_tokens"] % 16 == 0


def test_profile_error_exits_3():
    assert check("--profile", "phi3-t4", "--set", "max_num_seqs=zero").exit_code == ExitCode.PROFILE


def test_unknown_vllm_version_is_a_profile_error():
    result = check("--profile", "phi3-t4", "--gpu", "T4", "--vllm-version", "0.1")
    assert result.exit_code == ExitCode.PROFILE and "shipped" in result.output


def test_flag_check_against_a_named_vllm_version():
    result = check("--profile", "phi3-t4", "--gpu", "T4", "--vllm-version", "0.26")
    assert result.exit_code == 0 and "vllm 0.26.0" in result.output


def test_list_profiles_classifies_every_builtin():
    result = check("--list-profiles", "--gpu", "L4", "--json")
    fits = {f["name"]: f for f in json.loads(result.stdout)}
    assert set(fits) == set(loader.builtin_names())
    assert fits["l4"]["verdict"] == "runnable"
    assert fits["h100"]["verdict"] == "runnable with less context"
    assert fits["h100-tp2"]["verdict"] == "incompatible"


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [
        ("T4", "phi3-t4"),
        ("L4", "l4-gpt-oss"),  # gpt-oss-20b (21B, MXFP4 experts) over Llama-3.1-8B
        ("A10G", "a10g"),
        ("A100-80", "a100"),
        ("H100", "h100-qwen3-moe"),  # the largest model made for it: Qwen3-30B-A3B (30.5B)
        ("H100:2", "h100-tp2"),
    ],
)
def test_auto_profile_picks_the_one_made_for_the_gpu(gpu, expected):
    assert commands.choose_auto_profile(gpu) == expected


def test_auto_prefers_the_fp8_twin_because_it_holds_more_kv():
    fits = {f.name: f for f in commands.profiles_for_host("H100")}
    bf16, fp8 = fits["h100"], fits["h100-fp8"]
    assert bf16.params == fp8.params and fp8.verdict == bf16.verdict == "runnable"
    assert (fp8.kv_cache_tokens or 0) > (bf16.kv_cache_tokens or 0)


def test_auto_profile_on_a_host_without_gpus_is_the_cpu_one():
    assert commands.choose_auto_profile(hardware=gpus.Hardware((), "none")) == "tiny-cpu"


def test_before_launch_refuses_a_busy_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        prof = loader.load("tiny-cpu", sets=[f"port={port}"], environ={}).profile
        with pytest.raises(RefusedError, match=f"port {port}"):
            commands.before_launch(prof, python=__import__("sys").executable)


def test_before_launch_lets_tiny_cpu_start_on_this_cpu_host():
    from tests.conftest import free_port

    prof = loader.load("tiny-cpu", sets=[f"port={free_port()}"], environ={}).profile
    commands.before_launch(prof, python=__import__("sys").executable)
