"""`serve fleet` for real: two models of the built-in tiny profile (two real vLLM CPU engines, each
under its own `serve launch`) behind one port, asked through the OpenAI SDK."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import NotFoundError, OpenAI

from openai_server.errors import ExitCode
from tests.conftest import Launched, assert_nothing_left, requires_vllm
from tests.fleet.running import output, run_fleet

pytestmark = [pytest.mark.e2e, requires_vllm]
READY_S = 420  # two engines starting at once on two cores


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    tmp = tmp_path_factory.mktemp("fleet")
    (tmp / "small.yaml").write_text("extends: tiny-cpu\nmax_num_seqs: 4\n")
    yield from run_fleet(
        tmp,
        # tiny-cpu caps answers at 128 tokens (sampling.max_tokens): chat's may be 512 long
        "  chat: {profile: tiny-cpu, set: {enforce_eager: true, sampling.max_tokens: 512}}\n"
        # small starts at its first request and stops after 15 s without one
        "  small: {profile: small.yaml, set: {enforce_eager: true}, preload: false, ttl: 15}\n",
        READY_S,
    )


def client(fleet: Launched) -> OpenAI:
    return OpenAI(base_url=f"{fleet.base_url}/v1", api_key="none", max_retries=0)


def test_both_models_are_listed_the_one_not_preloaded_as_unloaded(fleet: Launched) -> None:
    listed = httpx.get(f"{fleet.base_url}/v1/models").json()["data"]
    assert {(m["id"], m["state"]) for m in listed} == {("chat", "ready"), ("small", "unloaded")}
    assert [m.id for m in client(fleet).models.list()] == ["chat", "small"]
    assert "small: started its launcher" not in output(fleet)


def test_each_model_answers_under_its_own_name_the_unloaded_one_once_started(
    fleet: Launched,
) -> None:
    for name in ("chat", "small"):  # small's request waits for its start
        reply = client(fleet).chat.completions.create(
            model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert reply.model == name and reply.usage is not None
        assert reply.usage.completion_tokens == 4


def test_a_long_stream_completes_whole_while_the_other_model_is_asked(fleet: Launched) -> None:
    done: list[int] = []

    def ask_small() -> None:
        for _ in range(3):
            r = client(fleet).completions.create(model="small", prompt="x", max_tokens=8)
            done.append(r.usage.completion_tokens if r.usage else 0)

    stream = client(fleet).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "tell"}], max_tokens=400, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    )  # fmt: skip
    other = None
    chunks, usage = 0, None
    for chunk in stream:
        chunks += 1
        if chunks == 5:  # the stream is flowing: now the other model is asked
            other = threading.Thread(target=ask_small)
            other.start()
        if chunk.usage is not None:
            usage = chunk.usage
    assert other is not None
    other.join(120)
    assert usage is not None and usage.completion_tokens == 400, usage
    # vLLM may merge tokens into one chunk when its reader lags: the usage counts the tokens
    assert chunks > 5 and done == [8, 8, 8]


def test_an_unknown_model_gets_a_404_with_an_openai_error(fleet: Launched) -> None:
    with pytest.raises(NotFoundError) as caught:
        client(fleet).chat.completions.create(model="gpt-4", messages=[], max_tokens=1)
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found", body
    assert "known models: chat, small" in body["message"]


def test_a_model_idle_for_its_ttl_is_unloaded_and_loads_again_at_its_next_request(
    fleet: Launched,
) -> None:
    deadline = time.monotonic() + 60
    while not re.search(r"small: unloaded \([\d.]+ s\); it starts again", output(fleet)):
        assert time.monotonic() < deadline, output(fleet)[-3000:]
        time.sleep(0.5)
    state = httpx.get(f"{fleet.base_url}/fleet").json()["models"]["small"]
    assert state["state"] == "unloaded" and state["loads"] == 1 and state["load_seconds"] > 0
    engines = [int(p) for p in re.findall(r"\[small\] serve: started the server \(pid (\d+)\)",
                                          output(fleet))]  # fmt: skip
    assert_nothing_left(f"started the server (pid {engines[0]})", None)  # its engine is gone
    reply = client(fleet).completions.create(model="small", prompt="x", max_tokens=2)
    assert reply.model == "small"
    assert httpx.get(f"{fleet.base_url}/fleet").json()["models"]["small"]["loads"] == 2


def test_sigterm_stops_every_model_and_leaves_nothing(fleet: Launched) -> None:
    fleet.proc.send_signal(signal.SIGTERM)
    assert fleet.proc.wait(120) == ExitCode.TERMINATED, output(fleet)[-3000:]
    out = output(fleet)
    assert "serve: fleet: every model's launcher stopped; none left" in out
    launchers = [int(p) for p in re.findall(r"started its launcher \(pid (\d+)\)", out)]
    assert len(launchers) == 3  # chat's, and small's two loads
    assert_nothing_left(out, fleet.port)  # the engines' groups ("started the server (pid N)")
    assert all(not Path(f"/proc/{pid}").exists() for pid in launchers)
