"""A fleet that cannot hold both its models at once swaps them, for real: two tiny-cpu engines with
`max_resident: 1` (on CPU a swap is a stop and a start; on a GPU host, vLLM's sleep mode)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from openai import APIError, APIStatusError, OpenAI

from openai_server.errors import ExitCode
from tests.conftest import Launched, assert_nothing_left, requires_vllm
from tests.fleet.running import output, run_fleet

pytestmark = [pytest.mark.e2e, requires_vllm]
READY_S = 300


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    yield from run_fleet(
        tmp_path_factory.mktemp("swap"),
        "  chat: {profile: tiny-cpu, set: {enforce_eager: true, sampling.max_tokens: 1500}}\n"
        "  small: {profile: tiny-cpu, set: {enforce_eager: true}}\n",  # preloaded, but no room
        READY_S,
        head="max_resident: 1\nmin_residency: 0\n",
    )


def client(fleet: Launched) -> OpenAI:
    return OpenAI(base_url=f"{fleet.base_url}/v1", api_key="none", max_retries=0, timeout=READY_S)


def states(fleet: Launched) -> dict[str, dict[str, object]]:
    models: dict[str, dict[str, object]] = httpx.get(f"{fleet.base_url}/fleet").json()["models"]
    return models


def test_a_model_that_does_not_fit_is_not_preloaded(fleet: Launched) -> None:
    assert "small: not preloaded (it does not fit beside the models loaded before it)" in output(
        fleet
    )
    chat = states(fleet)["chat"]
    assert (chat["unload_by"], chat["gpus"], chat["gpu_share"]) == ("stop", [], None)  # CPU
    assert {n: s["state"] for n, s in states(fleet).items()} == {
        "chat": "ready",
        "small": "unloaded",
    }


def test_a_swap_waits_for_the_stream_in_flight_and_never_cuts_it(fleet: Launched) -> None:
    answered: list[float] = []

    def ask_small() -> None:
        r = client(fleet).completions.create(model="small", prompt="x", max_tokens=4)
        assert r.model == "small" and r.usage is not None and r.usage.completion_tokens == 4
        answered.append(time.monotonic())

    stream = client(fleet).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "tell"}], max_tokens=1500, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    )  # fmt: skip
    # 1,500 tokens: seconds of streaming even for the tiny model, while the other model's request
    # reaches the fleet within a fraction of one
    other, usage, finish = None, None, None
    for chunks, chunk in enumerate(stream, 1):
        if chunks == 5:  # the stream flows: now the model that needs chat's room is asked for
            other = threading.Thread(target=ask_small)
            other.start()
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    ended = time.monotonic()
    assert other is not None
    other.join(READY_S)
    assert usage is not None and usage.completion_tokens == 1500 and finish == "length", usage
    assert answered and answered[0] > ended  # small answered only once chat's stream was whole
    out = output(fleet)
    # whether the stream was still in flight when small's request came depends on when this
    # (loaded) client read its chunks: either way chat's unload came after it (test_controller.py
    # holds the wait itself to account without timing)
    assert re.search(r"chat: unloading \(swapped out for small\)(; 1 request\(s\) in flight "
                     r"finish first)?\n", out), out[-3000:]  # fmt: skip
    assert re.search(r"chat: unloaded \(\d+\.\d s\)", out), out[-3000:]
    got = states(fleet)
    assert got["chat"]["state"] == "unloaded" and got["chat"]["swaps"] == 1
    assert got["small"]["state"] == "ready" and got["small"]["loads"] == 1


def test_asking_for_the_first_model_again_swaps_back(fleet: Launched) -> None:
    reply = client(fleet).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert reply.model == "chat"
    got = states(fleet)
    assert got["chat"]["loads"] == 2 and got["small"]["state"] == "unloaded"
    assert got["small"]["swaps"] == 1
    metrics = httpx.get(f"{fleet.base_url}/metrics").text
    assert 'serve_fleet_swaps_total{model="small"} 1' in metrics


def test_a_model_that_crashes_mid_stream_fails_alone_and_the_other_swaps_in(
    fleet: Launched,
) -> None:
    servers = re.findall(r"\[chat\] serve: started the server \(pid (\d+)\)", output(fleet))
    stream = client(fleet).completions.create(
        model="chat", prompt="tell", max_tokens=1500, stream=True, extra_body={"ignore_eos": True}
    )
    finish = None
    # the answer begun is cut (the client sees its connection end mid-body), not left hanging
    with pytest.raises((APIError, httpx.HTTPError)):
        for chunks, chunk in enumerate(stream, 1):
            if chunks == 5:
                os.killpg(int(servers[-1]), signal.SIGKILL)  # chat's vLLM, engine and all
            finish = chunk.choices[0].finish_reason if chunk.choices else finish
    assert finish is None
    deadline = time.monotonic() + 120
    while states(fleet)["chat"]["state"] != "failed":
        assert time.monotonic() < deadline, output(fleet)[-3000:]
        time.sleep(0.5)
    cause = str(states(fleet)["chat"]["cause"])
    with pytest.raises(APIStatusError) as refused:  # its requests get its cause
        client(fleet).completions.create(model="chat", prompt="x", max_tokens=2)
    assert refused.value.status_code == 503 and cause in refused.value.message
    reply = client(fleet).completions.create(model="small", prompt="x", max_tokens=2)
    assert reply.model == "small"  # chat holds nothing now: small loads beside it


def test_sigterm_stops_the_loaded_model_and_leaves_nothing(fleet: Launched) -> None:
    fleet.proc.send_signal(signal.SIGTERM)
    assert fleet.proc.wait(120) == ExitCode.TERMINATED, output(fleet)[-3000:]
    out = output(fleet)
    launchers = [int(p) for p in re.findall(r"started its launcher \(pid (\d+)\)", out)]
    assert len(launchers) == 4  # chat, small, chat again, small again
    assert_nothing_left(out, fleet.port)
