"""Readiness over HTTP: ready means `GET /v1/models` lists the served model id.

vLLM's API process binds its port early and refuses connections until the whole engine is built;
then /health, /v1/models and friends all answer at once. /health alone is not enough:
it says nothing about *which* model is served (a served-model-name mismatch is a classic outage,
production-stack 3486), so readiness asks for the id itself.
"""

from __future__ import annotations

import httpx

from ..probe import ProbeResult, auth_headers, judge, models_url


def base_url_for(host: str, port: int) -> str:
    """The URL a local client uses: a wildcard bind address is reached through loopback."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def check_models(
    client: httpx.Client, base_url: str, model: str | None, api_key: str | None = None
) -> ProbeResult:
    """One probe of /v1/models over the launcher's client (`serve probe` makes the same judgement
    with the standard library: probe.py). `model=None` accepts any listed model."""
    url = models_url(base_url)
    try:
        response = client.get(url, headers=auth_headers(api_key))
    except httpx.ConnectError:
        return ProbeResult(False, f"connection refused at {url}")
    except httpx.TimeoutException:
        return ProbeResult(False, f"timed out asking {url}")
    except httpx.HTTPError as e:
        return ProbeResult(False, f"{type(e).__name__} asking {url}: {e}")
    return judge(url, response.status_code, response.content, model)


def check_health(client: httpx.Client, base_url: str) -> int | None:
    """GET /health: its status code (vLLM: 200 alive, 503 engine dead), None when unreachable.

    /health is 200 for a hung-but-alive engine too (vllm 39863): see `deep_probe`.
    """
    try:
        return client.get(base_url.rstrip("/") + "/health").status_code
    except httpx.HTTPError:
        return None


def deep_probe(
    base_url: str, model: str, api_key: str | None, *, custom: bool, timeout: float
) -> str | None:
    """Generate one token; None when it came back in time, else why not.

    The only check that sees an engine that hangs while /health answers 200.
    """
    if custom:
        url, body = base_url.rstrip("/") + "/generate", {"prompt": "ping", "max_tokens": 1}
    else:
        url = base_url.rstrip("/") + "/v1/completions"
        body = {"model": model, "prompt": "ping", "max_tokens": 1}
    try:
        with httpx.Client(timeout=timeout) as client:
            response = client.post(url, json=body, headers=auth_headers(api_key))
    except httpx.TimeoutException:
        return f"no token from {url} within {timeout:.0f} s"
    except httpx.HTTPError as e:
        return f"{type(e).__name__} from {url}"
    if response.status_code != 200:
        return f"{url} answered HTTP {response.status_code}"
    return None
