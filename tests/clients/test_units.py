"""Smoke-test failure classes (OpenAI SDK over httpx.MockTransport), dataset files, URLs.

The real server cannot be made to refuse a key, lack a chat template or stream a single chunk on
demand; MockTransport answers with vLLM's own status codes and messages instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from openai_server.clients import smoke, workload
from openai_server.clients.endpoint import Endpoint, endpoint, normalize_root
from openai_server.errors import ClientError, ExitCode

NO_TEMPLATE = (
    "As of transformers v4.44, default chat template is no longer allowed, so you must provide "
    "a chat template if the tokenizer does not define one."
)


def sse(*chunks: dict[str, object]) -> bytes:
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


def delta(text: str, finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


USAGE = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
GOOD_STREAM = sse(delta("a"), delta("b"), delta("c", "length"), USAGE)


def server(
    models: list[str] = ["m"],  # noqa: B006 - never mutated
    chat: Callable[[], httpx.Response] = lambda: httpx.Response(200, content=GOOD_STREAM),
    models_status: int = 200,
) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            if models_status != 200:
                return httpx.Response(models_status, json={"error": "Unauthorized"})
            return httpx.Response(
                200, json={"object": "list", "data": [{"id": m, "object": "model"} for m in models]}
            )
        return chat()

    return httpx.Client(transport=httpx.MockTransport(handle))


EP = Endpoint("http://test")


def test_smoke_passes_with_chunks_finish_and_usage() -> None:
    result = smoke.run(EP, None, 5, http_client=server())
    assert (result.model, result.content_chunks, result.completion_tokens) == ("m", 3, 3)
    assert result.finish_reason == "length" and result.ttft_ms >= 0
    assert "TTFT" in result.line() and "tokens/s" in result.line()


@pytest.mark.parametrize(
    ("client", "model", "kind", "says"),
    [
        (server(models_status=401), None, "auth", "401"),
        (server(models_status=403), None, "auth", "403"),
        (server(models=["a", "b"]), None, "model missing", "a, b"),
        (server(models=["a"]), "x", "model missing", "listed: a"),
        (
            server(
                chat=lambda: httpx.Response(
                    400,
                    json={
                        "error": {"message": NO_TEMPLATE, "type": "BadRequestError", "code": 400}
                    },
                )
            ),
            None,
            "no chat template",
            "--chat-template",
        ),
        (
            server(
                chat=lambda: httpx.Response(
                    500, json={"error": {"message": "EngineCore encountered an issue"}}
                )
            ),
            None,
            "HTTP 500",
            "EngineCore",
        ),
        (
            server(chat=lambda: httpx.Response(200, content=sse(delta("only", "stop"), USAGE))),
            None,
            "too few chunks",
            "1 content chunk",
        ),
        (
            server(chat=lambda: httpx.Response(200, content=sse(delta("a"), delta("b"), USAGE))),
            None,
            "no finish reason",
            "ended",
        ),
        (
            server(chat=lambda: httpx.Response(200, content=sse(delta("a"), delta("b", "stop")))),
            None,
            "no usage",
            "include_usage",
        ),
    ],
)
def test_smoke_names_the_failure_class(
    client: httpx.Client, model: str | None, kind: str, says: str
) -> None:
    with pytest.raises(smoke.SmokeFailed) as caught:
        smoke.run(EP, model, 5, http_client=client)
    assert caught.value.kind == kind
    assert says in caught.value.message
    assert caught.value.exit_code == ExitCode.CLIENT
    assert "\n" not in caught.value.message


def test_smoke_timeout_is_classified() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = httpx.Client(transport=httpx.MockTransport(slow))
    with pytest.raises(smoke.SmokeFailed) as caught:
        smoke.run(EP, None, 3, http_client=client)
    assert caught.value.kind == "timeout" and "3 s" in caught.value.message


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://h:8000", "http://h:8000"),
        ("http://h:8000/", "http://h:8000"),
        ("http://h:8000/v1", "http://h:8000"),
        ("https://x.endpoints.huggingface.cloud/v1/", "https://x.endpoints.huggingface.cloud"),
        ("localhost:8000", "http://localhost:8000"),
    ],
)
def test_url_with_or_without_v1_gives_the_server_root(url: str, root: str) -> None:
    assert normalize_root(url) == root


def test_api_key_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MY_TOKEN", "secret")
    assert endpoint("http://h", "MY_TOKEN").headers() == {"Authorization": "Bearer secret"}
    assert endpoint("http://h", None).headers() == {}
    with pytest.raises(ClientError, match="UNSET_VAR is not set"):
        endpoint("http://h", "UNSET_VAR")


def test_dataset_lines_give_prompts_cycled_to_the_count(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "hello", "max_tokens": 5}\n\n'
        '{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}\n'
    )
    prompts = workload.load_dataset(path, default_max_tokens=9, limit=3)
    assert [p.max_tokens for p in prompts] == [5, 9, 5]
    assert prompts[0].chat_messages() == [{"role": "user", "content": "hello"}]
    assert prompts[1].chat_messages()[0] == {"role": "system", "content": "be brief"}


@pytest.mark.parametrize(
    ("line", "says"),
    [("not json", "p.jsonl:1: not JSON"), ('{"max_tokens": 3}', "expected 'prompt'"),
     ('{"prompt": "x", "max_tokens": 0}', "max_tokens: 0"), ("[1]", "expected an object")],
)  # fmt: skip
def test_bad_dataset_line_is_refused_with_file_and_line(
    tmp_path: Path, line: str, says: str
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ClientError, match=says):
        workload.load_dataset(path, 8, 1)


def test_without_tokenize_route_prompts_are_sized_by_calibration() -> None:
    """A managed endpoint has no /tokenize: two one-token requests measure tokens per word."""
    import asyncio

    from aiohttp import web

    from openai_server.clients.loadgen import session_for

    async def chat(request: web.Request) -> web.Response:
        words = len((await request.json())["messages"][0]["content"].split())
        return web.json_response(
            {"usage": {"prompt_tokens": 5 + 2 * words, "completion_tokens": 1}}
        )

    async def scenario() -> list[workload.Prompt]:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)  # and no /tokenize: 404
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with session_for(2) as session:
                ep = Endpoint(f"http://127.0.0.1:{port}")
                return await workload.random_prompts(session, ep, "m", 3, 40, 7, seed=1)
        finally:
            await runner.cleanup()

    prompts = asyncio.run(scenario())
    assert [len(p.text.split()) for p in prompts] == [20, 20, 20]  # 40 tokens at 2 per word
    assert {p.max_tokens for p in prompts} == {7}
