"""Profile -> argv: pure, explicit booleans, no secrets, and accepted by the real vLLM parser."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from openai_server import loader, render, tiny
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
