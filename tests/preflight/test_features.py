"""Tool calling, reasoning, LoRA, chat template and generation config: typed keys, their
rendering, and the one-line refusals of `serve check` (no vLLM started; the e2e cases are in
test_features_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openai_server import loader, render
from openai_server.cli import app
from openai_server.clients import smoke
from openai_server.clients.endpoint import Endpoint
from openai_server.errors import ExitCode, ProfileError
from openai_server.preflight import adapters, memory, models
from openai_server.tiny import adapter as tiny_adapter

TINY_MODULES = {"self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"}


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVE_FLAGS_CACHE", str(tmp_path / "flags"))


def profile_file(tmp_path: Path, body: str, extends: str = "tiny-cpu") -> str:
    path = tmp_path / "p.yaml"
    path.write_text(f"extends: {extends}\n{body}")
    return str(path)


def check(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["check", *args])
    return done.exit_code, done.output


def one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("serve: error:")]
    assert len(errors) == 1, output
    return errors[0]


# ---------------------------------------------------------------- keys and rendering


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("enable_auto_tool_choice: true\ntool_call_parser: null\n",
         "enable_auto_tool_choice: needs tool_call_parser"),
        ("lora_modules: {a: /x}\nenable_lora: false\n", "lora_modules: adapters with enable_lora"),
        ("lora_modules: {tiny-phi3: /x}\n", "the base model's own name"),
        ("max_loras: 4\nmax_cpu_loras: 2\n", "max_cpu_loras: 2 is below max_loras (4)"),
        ("server: custom\nreasoning_parser: qwen3\n", "reasoning_parser: vLLM's OpenAI server"),
        ("lora_modules: {a: 'builtin:nope'}\n", "unknown built-in adapter"),
        ("lora_modules: {'a b': /x}\n", "lora_modules"),
        ("max_lora_rank: '16'\n", "max_lora_rank"),
    ],
)  # fmt: skip
def test_keys_that_cannot_go_together_are_one_profile_error(
    body: str, says: str, tmp_path: Path
) -> None:
    with pytest.raises(ProfileError) as caught:
        loader.load(profile_file(tmp_path, body), environ={})
    assert says in caught.value.message and "\n" not in caught.value.message


def test_lora_renders_enable_modules_and_the_runtime_switch(tmp_path: Path) -> None:
    body = ("lora_modules: {a: /adapters/a, b: 'builtin:tiny-phi3-lora'}\nmax_lora_rank: 32\n"
            "allow_runtime_lora_updating: true\nreasoning_parser: deepseek_r1\n"
            "generation_config: vllm\n")  # fmt: skip
    prof = loader.load(profile_file(tmp_path, body), environ={}).profile
    command = render.render(prof, python="python", cache_dir=tmp_path)
    argv = command.argv
    i = argv.index("--lora-modules")
    assert argv[i - 1] == "--enable-lora"  # implied by lora_modules
    assert argv[i + 1 : i + 3] == ["a=/adapters/a", f"b={tiny_adapter.adapter_dir(tmp_path)}"]
    assert argv[argv.index("--max-lora-rank") + 1] == "32"
    assert argv[argv.index("--reasoning-parser") + 1] == "deepseek_r1"
    assert argv[argv.index("--generation-config") + 1] == "vllm"
    assert command.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "--allow-runtime-lora-updating" not in argv


def test_extra_args_may_not_set_what_a_feature_key_renders(tmp_path: Path) -> None:
    body = "extra_args: ['--tool-call-parser', 'hermes']\n"
    with pytest.raises(ProfileError, match="set tool_call_parser: hermes instead"):
        loader.load(profile_file(tmp_path, body), environ={})


def test_builtin_profiles_with_tool_calling_pass_their_checks() -> None:
    for name, gpu, parser in (("l4", "L4", "llama3_json"), ("h100", "H100", "llama3_json"),
                              ("h100-tp2", "H100:2", "llama3_json"), ("a10g", "A10G", "hermes"),
                              ("a100", "A100-80", "hermes")):  # fmt: skip
        prof = loader.load(name, environ={}).profile
        assert prof.enable_auto_tool_choice and prof.tool_call_parser == parser
        for version in ("0.26", "0.33"):
            code, out = check("-p", name, "--gpu", gpu, "--vllm-version", version)
            assert code == 0, out


# ---------------------------------------------------------------- parser names per vLLM release


@pytest.mark.parametrize(
    ("key", "name", "refused_on", "ok_on"),
    [
        ("tool_call_parser", "kimi_k3", "0.26", "0.27"),  # added in 0.27.1
        ("tool_call_parser", "qwen3_json", "0.31", "0.32"),
        ("reasoning_parser", "granite_thinking_parser", "0.30", "0.31"),
        ("reasoning_parser", "step5", "0.32", "0.33"),
    ],
)
def test_a_parser_of_another_vllm_release_is_refused_in_one_line(
    key: str, name: str, refused_on: str, ok_on: str, tmp_path: Path
) -> None:
    path = profile_file(tmp_path, f"{key}: {name}\n")
    code, out = check("-p", path, "--vllm-version", refused_on)
    assert code == ExitCode.REFUSED
    line = one_error_line(out)
    assert f"{key}: {name!r} is not a" in line and f"{refused_on}." in line
    assert check("-p", path, "--vllm-version", ok_on)[0] == 0


def test_a_misspelt_parser_gets_the_near_names(tmp_path: Path) -> None:
    code, out = check("-p", profile_file(tmp_path, "tool_call_parser: hermess\n"),
                      "--vllm-version", "0.32")  # fmt: skip
    assert code == ExitCode.REFUSED and "fix: use hermes" in one_error_line(out)


def test_a_parser_plugin_lifts_the_name_check(tmp_path: Path) -> None:
    body = "tool_call_parser: mine\nextra_args: ['--tool-parser-plugin', '/p/mine.py']\n"
    assert check("-p", profile_file(tmp_path, body), "--vllm-version", "0.32")[0] == 0


# ---------------------------------------------------------------- LoRA adapters


def test_the_builtin_adapter_is_deterministic_and_fits_the_tiny_model(tmp_path: Path) -> None:
    a = tiny_adapter.write(tmp_path / "a")
    b = tiny_adapter.write(tmp_path / "b")
    assert (a / "adapter_model.safetensors").read_bytes() == (
        b / "adapter_model.safetensors"
    ).read_bytes()
    read = adapters.read("x", str(a))
    assert (read.rank, read.peft_type, set(read.shapes)) == (8, "LORA", TINY_MODULES)
    from openai_server import tiny

    linears = adapters.model_linears(tiny.ensure(tmp_path))
    assert linears is not None and {m: linears[m] for m in read.shapes} == read.shapes


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda d: tiny_adapter.write(d, rank=64), "rank 64 > max_lora_rank 16"),
        (lambda d: tiny_adapter.write(d, base="meta-llama/Llama-3.1-8B-Instruct",
                                      modules={"self_attn.q_proj": (4096, 4096)}),
         "trained on meta-llama/Llama-3.1-8B-Instruct, targets q_proj"),
        (lambda d: tiny_adapter.write(d, base="org/other-tiny"),
         "trained on org/other-tiny, not on tiny-phi3"),
        (lambda d: tiny_adapter.write(d, modules={"self_attn.qkv_proj": (999, 256)}),
         "qkv_proj 999->256"),
        (lambda d: d.mkdir(), "not a PEFT adapter: no adapter_config.json"),
        (lambda d: None, "no such directory"),
    ],
)  # fmt: skip
def test_an_adapter_that_cannot_serve_is_refused_in_one_line(
    make, says: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    make(tmp_path / "adapter")
    body = f"lora_modules: {{mine: {tmp_path / 'adapter'}}}\n"
    code, out = check("-p", profile_file(tmp_path, body))
    assert code == ExitCode.REFUSED, out
    line = one_error_line(out)
    assert "lora_modules.mine" in line and says in line and "fix:" in line


def test_a_large_enough_max_lora_rank_serves_the_rank_64_adapter(tmp_path: Path) -> None:
    tiny_adapter.write(tmp_path / "adapter", rank=64)
    body = f"lora_modules: {{mine: {tmp_path / 'adapter'}}}\nmax_lora_rank: 64\n"
    code, out = check("-p", profile_file(tmp_path, body))
    assert code == 0, out


def test_a_hub_adapter_that_is_not_downloaded_is_a_warning(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    body = "lora_modules: {sql: some-org/sql-lora}\n"
    code, out = check("-p", profile_file(tmp_path, body), "--json")
    assert code == 0, out
    (lora,) = [c for c in json.loads(out)["checks"] if c["name"] == "LoRA sql"]
    assert lora["status"] == "warning" and "not in the local Hugging Face cache" in lora["reason"]


def test_lora_slots_take_memory_from_the_kv_cache() -> None:
    shape = models.find("meta-llama/Llama-3.1-8B-Instruct")
    assert shape is not None
    base = memory.Settings(dtype_bytes=2, kv_bytes=2, quantization=None,
                           gpu_memory_utilization=0.9, max_model_len=8192, max_num_seqs=32,
                           max_num_batched_tokens=2048, enforce_eager=False)  # fmt: skip
    total = int(22.05 * memory.GiB)
    plain = memory.fit(shape, base, total)
    with_lora = memory.fit(shape, memory.Settings(**{**base.__dict__, "max_loras": 4,
                                                     "max_lora_rank": 64}), total)  # fmt: skip
    # 4 slots x rank 64 x 32 layers x (A in + B out features) x 2 bytes = 1.25 GiB
    assert with_lora.lora_bytes == 4 * 64 * 32 * (38912 + 43008) * 2
    assert plain.kv_cache_tokens - with_lora.kv_cache_tokens >= with_lora.lora_bytes // (
        plain.kv_bytes_per_token) - 16  # fmt: skip


# ---------------------------------------------------------------- chat template, generation config


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("templates/missing.jinja", "looks like a file, and cannot be read"),
        ("'{% for m in messages %}{{ m.content }}'", "not a Jinja template (line 1"),
        ("'{{ messages[0].content }'", "not a Jinja template"),
    ],
)
def test_a_chat_template_vllm_cannot_use_is_refused(value: str, says: str, tmp_path: Path) -> None:
    code, out = check("-p", profile_file(tmp_path, f"chat_template: {value}\n"))
    assert code == ExitCode.REFUSED
    assert says in one_error_line(out)


def test_a_readable_template_file_and_an_inline_template_pass(tmp_path: Path) -> None:
    (tmp_path / "t.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}\n")
    assert check("-p", profile_file(tmp_path, f"chat_template: {tmp_path / 't.jinja'}\n"))[0] == 0
    inline = "chat_template: \"{% for m in messages %}{{ m['content'] }}{% endfor %}\"\n"
    assert check("-p", profile_file(tmp_path, inline))[0] == 0


def test_generation_config_folder_must_hold_the_file(tmp_path: Path) -> None:
    (tmp_path / "gen").mkdir()
    code, out = check("-p", profile_file(tmp_path, f"generation_config: {tmp_path / 'gen'}\n"))
    assert code == ExitCode.REFUSED and "no generation_config.json" in one_error_line(out)
    (tmp_path / "gen" / "generation_config.json").write_text(json.dumps({"temperature": 0.6}))
    assert check("-p", profile_file(tmp_path, f"generation_config: {tmp_path / 'gen'}\n"))[0] == 0


# ---------------------------------------------------------------- smoke: tool_choice auto


def test_smoke_says_whether_the_server_takes_tool_choice_auto() -> None:
    import httpx

    refusal = (
        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    )
    stream = (b'data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n'
              b'data: {"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"length"}]}\n\n'
              b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,'
              b'"total_tokens":3}}\n\ndata: [DONE]\n\n')  # fmt: skip

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})
        if b'"tools"' in request.content:
            return httpx.Response(400, json={"error": {"message": refusal, "code": 400}})
        return httpx.Response(200, content=stream)

    result = smoke.run(Endpoint("http://test"), None, 5,
                       http_client=httpx.Client(transport=httpx.MockTransport(handle)))  # fmt: skip
    assert result.tool_choice_auto is False and refusal in result.line()
