"""All-reduce without NVLink multicast for tensor/pipeline parallel, rendered on the CPU."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from openai_server import loader, render
from openai_server.cli import app
from openai_server.multicast import SAFE_ENV, all_reduce, fuses_all_reduce

TP2 = "model: org/m\ntensor_parallel_size: 2\n"
OFF = {"NCCL_NVLS_ENABLE": "0"}
SAFE_ARGS = ["--disable-custom-all-reduce", "--compilation-config",
             '{"pass_config":{"fuse_allreduce_rms":false}}']  # fmt: skip


def profile(text: str):  # type: ignore[no-untyped-def]
    return loader.load_text(text).profile


@pytest.mark.parametrize(
    ("text", "environ", "safe"),
    [
        ("model: org/m\n", OFF, False),  # one GPU: no all-reduce at all
        (TP2, {}, False),  # multicast not switched off: vLLM's own choice
        (TP2, OFF, True),
        (TP2, {"TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}, True),
        (TP2, {"NVSHMEM_DISABLE_NVLS": "1"}, True),
        (TP2, {"NCCL_NVLS_ENABLE": "1"}, False),
        ("model: org/m\npipeline_parallel_size: 2\n", OFF, True),
        (TP2 + "env: {NCCL_NVLS_ENABLE: '0'}\n", {}, True),  # the server's env counts too
        (TP2 + "nvlink_multicast: false\n", {}, True),  # the profile key decides
        (TP2 + "nvlink_multicast: true\n", OFF, False),
    ],
)
def test_when_the_safe_form_is_rendered(text: str, environ: dict[str, str], safe: bool) -> None:
    reduce = all_reduce(profile(text), environ)
    assert reduce.safe is safe, reduce.why
    argv = render.render(profile(text), python="py", environ=environ).argv
    assert ("--disable-custom-all-reduce" in argv) is safe


def test_the_safe_form_comes_before_extra_args_and_sets_the_environment() -> None:
    prof = profile(TP2 + 'extra_args: ["--disable-log-stats"]\n')
    cmd = render.render(prof, python="py", environ=OFF)
    assert cmd.argv[-4:] == [*SAFE_ARGS, "--disable-log-stats"]
    assert cmd.env == SAFE_ENV
    assert "NCCL_NVLS_ENABLE=0" in all_reduce(prof, OFF).why


def test_the_profiles_own_settings_win() -> None:
    prof = profile(TP2 + "env: {VLLM_FLASHINFER_ALLREDUCE_BACKEND: auto}\n"
                   "extra_args: ['--compilation-config', '{\"level\": 3}']\n")  # fmt: skip
    cmd = render.render(prof, python="py", environ=OFF)
    assert cmd.env == {
        "VLLM_ALLREDUCE_USE_SYMM_MEM": "0",
        "VLLM_FLASHINFER_ALLREDUCE_BACKEND": "auto",
    }
    assert cmd.argv.count("--compilation-config") == 1 and cmd.argv[-1] == '{"level": 3}'
    assert "--disable-custom-all-reduce" in cmd.argv


def test_explain_says_why_and_check_accepts_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "0")
    explained = CliRunner().invoke(app, ["render", "-p", "h100-tp2", "--explain"]).stdout
    assert "all-reduce" in explained and "NCCL_NVLS_ENABLE=0" in explained
    shown = CliRunner().invoke(app, ["render", "-p", "h100-tp2", "--format", "json"])
    assert json.loads(shown.stdout)["env"]["VLLM_ALLREDUCE_USE_SYMM_MEM"] == "0"
    for version in ("0.26", "0.33"):
        checked = CliRunner().invoke(
            app, ["check", "-p", "h100-tp2", "--gpu", "H100:2", "--vllm-version", version, "--json"]
        )
        assert checked.exit_code == 0, checked.output
        report = json.loads(checked.stdout)
        assert report["ok"] and "flags accepted" in report["checks"][0]["reason"]


@pytest.mark.parametrize(
    ("argv", "fused"),
    [
        ([], True),
        (["--compilation-config", '{"pass_config":{"fuse_allreduce_rms":false}}'], False),
        (['--compilation-config={"pass_config": {"fuse_allreduce_rms": false}}'], False),
        (["--compilation-config", '{"pass_config":{"fuse_allreduce_rms":true}}'], True),
        (["--compilation-config", "3"], True),  # an optimization level: vLLM's defaults
        (["--compilation-config", "{not json"], True),
        # argparse keeps the last one
        (["--compilation-config", '{"pass_config":{"fuse_allreduce_rms":false}}',
          "--compilation-config", '{"level": 3}'], True),
    ],
)  # fmt: skip
def test_whether_vllm_fuses_all_reduce_is_read_from_the_command(
    argv: list[str], fused: bool
) -> None:
    assert fuses_all_reduce(argv) is fused


def test_check_counts_the_fused_all_reduce_workspace_only_where_vllm_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def kv_tokens() -> int:
        out = CliRunner().invoke(app, ["check", "-p", "h100-tp2", "--gpu", "H100:2", "--json"])
        return int(json.loads(out.stdout)["kv_cache_tokens"])

    monkeypatch.delenv("NCCL_NVLS_ENABLE", raising=False)
    monkeypatch.delenv("TORCH_SYMM_MEM_DISABLE_MULTICAST", raising=False)
    monkeypatch.delenv("NVSHMEM_DISABLE_NVLS", raising=False)
    fused = kv_tokens()
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "0")
    assert kv_tokens() - fused > 5_000  # ~1 GiB per GPU at 160 KiB a token
