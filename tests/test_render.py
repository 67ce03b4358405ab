"""Profile -> argv: pure, explicit booleans, no secrets, and accepted by the real vLLM parser."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from openai_server import loader, render, tiny
from openai_server.cache import locations
from openai_server.errors import ExitCode, ProfileError
from tests.conftest import modules_loaded_by, requires_vllm

HELPER = Path(__file__).parent / "helpers" / "parse_with_vllm.py"


def argv_of(text: str) -> list[str]:
    return render.render(loader.load_text(text).profile, python="py").argv


def test_booleans_are_explicit_both_ways() -> None:
    argv = argv_of("model: m\nenforce_eager: false\nenable_prefix_caching: true\n")
    assert "--no-enforce-eager" in argv and "--enable-prefix-caching" in argv


def test_unset_keys_are_not_rendered_so_vllm_defaults_apply() -> None:
    argv = argv_of("model: m\n")
    assert argv == ["py", "-m", render.OPENAI_MODULE, "--model", "m", "--host", "127.0.0.1",
                    "--port", "8000"]  # fmt: skip


def test_sampling_becomes_generation_config_override() -> None:
    argv = argv_of("model: m\nsampling:\n  temperature: 0.2\n  max_tokens: 64\n")
    i = argv.index("--override-generation-config")
    assert json.loads(argv[i + 1]) == {"temperature": 0.2, "max_new_tokens": 64}


def test_api_key_never_in_argv_but_passed_by_environment() -> None:
    cmd = render.render(loader.load_text("model: m\napi_key_env: MY_KEY\n").profile, python="py")
    assert not any("key" in a.lower() for a in cmd.argv)
    assert cmd.env_from == {"VLLM_API_KEY": "MY_KEY"}
    assert 'VLLM_API_KEY="$MY_KEY"' in cmd.shell_line()


def test_vllm_cpu_compiles_without_aot_and_logs_inductors_cache() -> None:
    prof = loader.load_text("model: m\n").profile
    env = render.render(prof, python="py", vllm=("vllm-cpu", "0.32.0"),
                        environ={"HOME": "/h"}).env  # fmt: skip
    assert env == {"VLLM_USE_AOT_COMPILE": "0", "TORCH_LOGS": "torch._inductor.codecache",
                   "TORCHINDUCTOR_CACHE_DIR": "/h/.cache/torchinductor"}  # fmt: skip
    # a user's TORCH_LOGS is kept; the profile's env has the last word
    env = render.render(prof, python="py", vllm=("vllm-cpu", "0.32.0"),
                        environ={"TORCH_LOGS": "+dynamo"}).env  # fmt: skip
    assert env["TORCH_LOGS"] == "+dynamo,torch._inductor.codecache"
    prof = loader.load_text("model: m\nenv:\n  VLLM_USE_AOT_COMPILE: '1'\n").profile
    assert render.render(prof, python="py", vllm=("vllm-cpu", "0.32.0")).env[
        "VLLM_USE_AOT_COMPILE"] == "1"  # fmt: skip
    # the GPU build keeps vLLM's own piecewise cache, which logs its hits itself
    assert render.render(prof, python="py", vllm=("vllm", "0.32.0")).env == {
        "VLLM_USE_AOT_COMPILE": "1"}  # fmt: skip


@pytest.mark.parametrize(
    "environ",
    [{"HOME": "/h"}, {"HOME": "/h", "XDG_CACHE_HOME": "/x"}, {"TORCHINDUCTOR_CACHE_DIR": "/i"}],
)
def test_vllm_cpu_compiles_into_the_inductor_cache_serve_packs(environ: dict[str, str]) -> None:
    """Inductor's cache is vllm-cpu's compile cache: under the home's cache directory (torch's
    default is one /tmp folder every home shares), where `serve cache` looks for it."""
    prof = loader.load_text("model: m\n").profile
    env = render.render(prof, python="py", vllm=("vllm-cpu", "0.32.0"), environ=environ).env
    child = {**environ, **env}
    assert child["TORCHINDUCTOR_CACHE_DIR"] == str(locations.root("inductor", environ))
    assert "TORCHINDUCTOR_CACHE_DIR" not in env or "TORCHINDUCTOR_CACHE_DIR" not in environ


def test_shell_line_is_safe_to_paste() -> None:
    cmd = render.render(
        loader.load_text("model: \"o'rg/$(rm -rf x)\"\nenv:\n  A: 'x y;z'\n").profile, python="py"
    )
    line = cmd.shell_line()
    assert shlex.split(line) == ["env", "A=x y;z", *cmd.argv]


def test_builtin_model_renders_to_its_generated_directory(tmp_path: Path) -> None:
    prof = loader.load("tiny-cpu", environ={}).profile
    argv = render.render(prof, python="py", cache_dir=tmp_path).argv
    assert argv[argv.index("--model") + 1] == str(tiny.model_dir(tmp_path))
    assert argv[argv.index("--served-model-name") + 1] == "tiny-phi3"


def test_custom_server_has_its_own_module_and_port() -> None:
    cmd = render.render(loader.load_text("model: m\nserver: custom\n").profile, python="py")
    assert cmd.argv[2] == render.CUSTOM_MODULE and cmd.argv[-1] == "7860"


def test_render_is_pure_no_vllm_or_torch_import() -> None:
    code = (
        "from openai_server import cli, loader, render;"
        "render.render(loader.load('phi3-t4', environ={}).profile, python='p')"
    )
    loaded = modules_loaded_by(code)
    assert [m for m in ("vllm", "torch", "openai", "numpy", "httpx") if m in loaded] == []


@requires_vllm
def test_every_builtin_profile_parses_with_the_installed_vllm_parser() -> None:
    names = loader.builtin_names()
    profiles = [loader.load(n, environ={}).profile for n in names]
    tails = [render.render(p, python="py").argv[3:] for p in profiles]
    out = subprocess.run(
        [sys.executable, str(HELPER)], input=json.dumps(tails), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    for name, prof, result in zip(names, profiles, json.loads(out.stdout), strict=True):
        assert result["ok"], f"{name}: vLLM rejected the rendered command: {result['error']}"
        assert result["inexact"] == [], f"{name}: flags only accepted as abbreviations"
        args = result["args"]
        for key in ("max_model_len", "max_num_seqs", "dtype", "gpu_memory_utilization", "port"):
            value = getattr(prof, key) if key != "port" else prof.effective_port
            if value is not None:
                assert args[key] == value, f"{name}: {key}"


@requires_vllm
def test_vllm_parser_rejects_an_unknown_flag_so_the_check_above_has_teeth() -> None:
    out = subprocess.run(
        [sys.executable, str(HELPER)], input=json.dumps([["--model", "m", "--no-such-flag", "1"]]),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert json.loads(out.stdout)[0]["ok"] is False


# ---------------------------------------------------------------- the entry point per vLLM


def test_entry_point_follows_the_target_vllm() -> None:
    prof = loader.load_text("model: m\nenforce_eager: false\n").profile

    def argv(vllm: tuple[str, str] | None) -> list[str]:
        return render.render(prof, python="py", vllm=vllm).argv

    universal = ["py", "-m", render.OPENAI_MODULE, "--model", "m", "--enforce-eager"][:5]
    # unknown: the module every supported release runs (deprecated, with a warning, from 0.29)
    assert argv(None)[:5] == universal
    assert argv(("vllm", "0.28.0"))[:5] == universal  # its supported entry point
    # the CPU build: its `vllm` CLI does not start, the module does
    assert argv(("vllm-cpu", "0.32.0"))[:5] == universal
    # 0.29 and later deprecate the module: `vllm serve MODEL`, the model positional
    for version in ("0.29.0", "0.33.0", "0.33.1rc1"):
        got = argv(("vllm", version))
        assert got[:5] == ["py", "-m", render.CLI_MODULE, "serve", "m"], version
        assert "--model" not in got and got[5:] == argv(None)[5:]


def test_entry_point_is_explained() -> None:
    prof = loader.load_text("model: m\n").profile
    entry = render.entry_for(prof, ("vllm", "0.33.0"))
    assert "`vllm serve`" in entry.why and "deprecated since 0.29" in entry.why
    assert "does not start" in render.entry_for(prof, ("vllm-cpu", "0.32.0")).why
    assert "unknown" in render.entry_for(prof, None).why
    custom = loader.load_text("model: m\nserver: custom\n").profile
    assert render.entry_for(custom, ("vllm", "0.33.0")).module == render.CUSTOM_MODULE


def test_render_explain_shows_the_entry_point() -> None:
    from typer.testing import CliRunner

    from openai_server.cli import app

    result = CliRunner().invoke(app, ["render", "-p", "phi3-t4", "--explain"])
    assert result.exit_code == 0, result.output
    assert re.search(r"entry point\s+-m vllm\.entrypoints\.\S+", result.stdout)


# ---------------------------------------------------------------- extra_args against the profile


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        # the example: vLLM would listen on 9000 while the launcher waits on 8000
        (["--port", "9000"], "extra_args: --port 9000 sets what the profile key port renders; "
                             "set port: 9000 instead"),
        (["--port=9000"], "set port: 9000 instead"),
        (["--po", "9000"], "--po 9000 (an abbreviation of --port) sets what the profile key port"),
        (["--host", "0.0.0.0"], "set host: 0.0.0.0 instead"),
        (["--model", "other"], "set model: other instead"),
        (["--served_model_name", "x"], "set served_model_name: x instead"),
        (["-tp", "2"], "-tp 2 (vLLM's alias of --tensor-parallel-size) sets what the profile key "
                       "tensor_parallel_size renders; set tensor_parallel_size: 2 instead"),
        (["-pp=2"], "set pipeline_parallel_size: 2 instead"),
        (["-q", "awq"], "set quantization: awq instead"),
        (["--no-enable-prefix-caching"], "set enable_prefix_caching: false instead"),
        (["--disable-prefix-caching"], "set enable_prefix_caching: false instead"),
        (["--enforce-eager"], "set enforce_eager: true instead"),
        (["--no-enf"], "(an abbreviation of --no-enforce-eager)"),
        (["--speculative-config.method", "ngram"], "set speculative_config: {method: ngram}"),
        (["--override-generation-config", "{}"], "set sampling: {...} instead"),
        (["--max-num", "4"], "abbreviates flags of several profile keys "
                             "(max_num_batched_tokens, max_num_seqs)"),
        (["--config", "c.yaml"], "extra_args: --config c.yaml: a vLLM config file can set any flag"),
        (["--uds", "/tmp/s"], "over TCP"),
        (["--headless"], "never becomes ready"),
    ],
)  # fmt: skip
def test_extra_args_that_contradict_the_profile_are_a_profile_error(
    extra: list[str], says: str
) -> None:
    # refused when the profile is validated, so validate, render, check and launch agree
    with pytest.raises(ProfileError) as e:
        loader.load_text(f"model: m\nextra_args: {json.dumps(extra)}\n")
    assert says in e.value.message and e.value.message.startswith("<profile>:2: extra_args: ")
    assert "\n" not in e.value.message and e.value.exit_code == ExitCode.PROFILE
    assert says in render.extra_args_contradictions(extra)[0]


@pytest.mark.parametrize(
    "extra",
    [
        ["--disable-log-stats"],
        ["--max-logprobs", "5", "--disable-log-stats"],
        ["-O3"],
        ["--seed-offset-that-vllm-lacks"],  # unknown: the check refuses it, with the releases
        ["--compilation-config.mode", "3"],
        ["--cudagraph-capture-sizes", "1", "2", "4"],
    ],
)
def test_extra_args_the_profile_does_not_render_are_passed_verbatim(extra: list[str]) -> None:
    prof = loader.load_text(f"model: m\nextra_args: {json.dumps(extra)}\n").profile
    assert render.render(prof, python="py").argv[-len(extra) :] == extra


def test_every_contradiction_is_reported_in_one_line() -> None:
    with pytest.raises(ProfileError) as e:
        loader.load_text('model: m\nextra_args: ["--port", "1", "-tp", "2"]\n')
    assert e.value.message.count("extra_args:") == 2 and "(and 1 more: " in e.value.message


@pytest.mark.parametrize("command", [["render"], ["check", "--vllm-version", "0.33.0"],
                                     ["launch", "--no-check"]])  # fmt: skip
def test_contradicting_extra_args_exit_3_before_anything_starts(
    tmp_path: Path, command: list[str]
) -> None:
    from typer.testing import CliRunner

    from openai_server.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text('model: m\nextra_args: ["--port", "9000"]\n')
    result = CliRunner().invoke(app, [command[0], "-p", str(bad), *command[1:]])
    assert result.exit_code == ExitCode.PROFILE, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln]
    assert len(lines) == 1 and "set port: 9000 instead" in lines[0]
    assert "started the server" not in result.output
