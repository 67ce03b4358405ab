"""Readiness and the launch options, without processes: the criterion over a mock transport,
and what `launch.entry.options_for` derives from a profile."""

from __future__ import annotations

import httpx
import pytest

from openai_server import loader
from openai_server.errors import ProfileError
from openai_server.launch.entry import options_for
from openai_server.launch.options import LaunchOptions, Timing, stop_grace
from openai_server.launch.readiness import base_url_for, check_models

URL = "http://127.0.0.1:8000"


def client(handler) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(transport=httpx.MockTransport(handler))


def models(*ids: str):  # type: ignore[no-untyped-def]
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/models"
        return httpx.Response(200, json={"object": "list", "data": [{"id": i} for i in ids]})

    return handler


def test_ready_when_the_model_is_listed() -> None:
    result = check_models(client(models("other", "tiny-phi3")), URL, "tiny-phi3")
    assert result.ready and result.models == ("other", "tiny-phi3")


def test_not_ready_while_another_model_is_listed() -> None:
    result = check_models(client(models("phi3")), URL, "tiny-phi3")
    assert not result.ready
    assert result.reason == "model 'tiny-phi3' not listed (listed: phi3)"


def test_an_empty_list_is_not_ready_even_without_a_model() -> None:
    assert not check_models(client(models()), URL, None).ready
    assert check_models(client(models("a")), URL, None).ready


def test_the_api_key_is_sent_as_a_bearer_token() -> None:
    def guarded(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != "Bearer s3cret":
            return httpx.Response(401, json={"error": "Unauthorized"})
        return models("m")(request)

    assert check_models(client(guarded), URL, "m", api_key="s3cret").ready
    wrong = check_models(client(guarded), URL, "m", api_key="nope")
    assert not wrong.ready and "401: wrong or missing API key" in wrong.reason
    assert "401" in check_models(client(guarded), URL, "m").reason


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(503, text="starting"), "answered HTTP 503"),
        (httpx.Response(200, text="<html>"), "did not answer an OpenAI model list"),
        (
            httpx.Response(200, json={"data": [{"name": "x"}]}),
            "did not answer an OpenAI model list",
        ),
    ],
)
def test_other_answers_are_not_ready(response: httpx.Response, reason: str) -> None:
    result = check_models(client(lambda _: response), URL, "m")
    assert not result.ready and reason in result.reason


def test_refused_and_timed_out_connections_are_not_ready() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    assert check_models(client(refuse), URL, "m").reason.startswith("connection refused at")
    assert check_models(client(slow), URL, "m").reason.startswith("timed out asking")


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("::", "http://127.0.0.1:8000"),
        ("10.1.2.3", "http://10.1.2.3:8000"),
        ("::1", "http://[::1]:8000"),
    ],
)
def test_the_probe_url_reaches_a_wildcard_bind_through_loopback(host: str, url: str) -> None:
    assert base_url_for(host, 8000) == url


def options(yaml_text: str, environ: dict[str, str] | None = None, **kw) -> LaunchOptions:  # type: ignore[no-untyped-def]
    profile = loader.load_text(yaml_text, "<test>").profile
    return options_for(profile, environ or {}, **kw)


def test_options_from_a_builtin_model_profile() -> None:
    opts = options("model: builtin:tiny-phi3\nhost: 0.0.0.0\nport: 8011\nrestart: on-failure\n",
                   restart_limit=2)  # fmt: skip
    assert opts.base_url == "http://127.0.0.1:8011"
    assert opts.model_id == "tiny-phi3" and opts.model and opts.model.endswith("tiny-phi3-v1")
    assert opts.restart.mode == "on-failure" and opts.restart.limit == 2
    assert opts.api_key is None and not opts.custom_server


def test_options_of_the_custom_server_use_its_port() -> None:
    opts = options("model: org/m\nserved_model_name: m\nserver: custom\n")
    assert opts.base_url == "http://127.0.0.1:7860" and opts.custom_server and opts.model_id == "m"


def test_the_api_key_comes_from_the_variable_the_profile_names() -> None:
    opts = options("model: org/m\napi_key_env: MY_KEY\n", {"MY_KEY": "k"})
    assert opts.api_key == "k"
    with pytest.raises(ProfileError, match="MY_KEY is not set or empty"):
        options("model: org/m\napi_key_env: MY_KEY\n", {"MY_KEY": ""})


def test_grace_covers_vllms_drain_time() -> None:
    assert stop_grace(30, None) == 30
    assert stop_grace(30, 5) == 30
    assert stop_grace(30, 60) == 70  # shutdown_timeout + 10 s for the engine's own exit
    opts = options("model: org/m\nshutdown_timeout: 45\n", timing=Timing(grace=5))
    assert opts.timing.grace == 55
