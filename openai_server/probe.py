"""`serve probe` on its fast path: one GET of /v1/models with the standard library only.

Every deployment runs it as a health check (Kubernetes' startup and readiness probes every 10 s,
the image's HEALTHCHECK), each call a new Python process: so it imports neither typer nor pydantic
nor httpx (`openai_server/main.py` answers `serve probe` before the CLI is imported). Where a
probe names a profile (`--profile`, `--set`), the full CLI resolves it and then calls the same
functions: one judgement of an answer (`judge`), here and in the launcher's readiness loop.

Ready means `/v1/models` lists the model id: vLLM binds its port early and refuses connections
until its engine is built, and /health alone says nothing about which model is served (a
served-model-name mismatch is a classic outage, production-stack 3486).

The image's health check does not know the profile's port or model (both may be changed by
`docker run IMAGE --set ...`): it reads the launcher's ready file (`--ready-file`), which the
launcher writes once ready and removes when it is not: "URL MODEL SECONDS [API_KEY_ENV]".
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ExitCode

DEFAULT_URL = "http://127.0.0.1:8000"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
POLL_S = 0.2
# a fleet's model in these states cannot answer (asleep or unloaded ones load at a request)
NOT_SERVING = ("starting", "failed", "stopped")


@dataclass(frozen=True)
class ProbeResult:
    ready: bool
    reason: str
    models: tuple[str, ...] = ()


def models_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/v1/models"


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The header vLLM's --api-key (and our custom server) expects; none without a key."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def judge(url: str, status: int, body: bytes, model: str | None) -> ProbeResult:
    """What one answer of GET /v1/models says. `model=None` accepts any listed model."""
    if status in (401, 403):
        return ProbeResult(False, f"{url} answered {status}: wrong or missing API key")
    if status != 200:
        return ProbeResult(False, f"{url} answered HTTP {status}")
    try:
        listed = json.loads(body)["data"]
        ids = tuple(str(m["id"]) for m in listed)
        # `serve fleet` lists every model of the fleet with its state; vLLM's entries have none
        states = {str(m["id"]): m["state"] for m in listed if "state" in m}
    except (ValueError, KeyError, TypeError):
        return ProbeResult(False, f"{url} did not answer an OpenAI model list")
    if model is None:
        return ProbeResult(bool(ids), "ready" if ids else "no model listed yet", ids)
    if states.get(model) in NOT_SERVING:
        return ProbeResult(False, f"model {model!r} is listed, {states[model]} (a fleet)", ids)
    if model in ids:
        return ProbeResult(True, "ready", ids)
    listed = ", ".join(ids) or "none"
    return ProbeResult(False, f"model {model!r} not listed (listed: {listed})", ids)


def probe_once(
    base_url: str, model: str | None, api_key: str | None, timeout: float
) -> ProbeResult:
    # here, not at the top: every `serve` command imports this module (main.py), few probe
    import urllib.error
    import urllib.request

    url = models_url(base_url)
    request = urllib.request.Request(url, headers=auth_headers(api_key))
    # a proxy from the environment (HTTP_PROXY in a container) never reaches this host's loopback
    local = request.host.rsplit(":", 1)[0].strip("[]") in LOOPBACK
    opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if local else []))
    try:
        with opener.open(request, timeout=timeout) as response:
            return judge(url, response.status, response.read(), model)
    except urllib.error.HTTPError as e:
        return judge(url, e.code, b"", model)
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            return ProbeResult(False, f"connection refused at {url}")
        if isinstance(e.reason, TimeoutError):
            return ProbeResult(False, f"timed out asking {url}")
        return ProbeResult(False, f"{type(e.reason).__name__} asking {url}: {e.reason}")
    except TimeoutError:
        return ProbeResult(False, f"timed out asking {url}")
    except OSError as e:
        return ProbeResult(False, f"{type(e).__name__} asking {url}: {e}")


def probe(
    base_url: str, model: str | None, api_key: str | None, *, wait: float, timeout: float
) -> ProbeResult:
    """Probe until ready or `wait` seconds have passed (0: once)."""
    deadline = time.monotonic() + wait
    while True:
        result = probe_once(base_url, model, api_key, timeout)
        if result.ready or time.monotonic() >= deadline:
            return result
        time.sleep(POLL_S)


@dataclass(frozen=True)
class Target:
    url: str
    model: str | None
    api_key_env: str | None


def from_ready_file(path: Path) -> Target | str:
    """The launcher's ready file as a probe target, or why there is none."""
    try:
        fields = path.read_text().split()
    except FileNotFoundError:
        return f"no ready file at {path}: the launcher is starting, or not running"
    except OSError as e:
        return f"cannot read the ready file {path}: {e.strerror}"
    if len(fields) < 3:
        return f"the ready file {path} is not the launcher's (URL MODEL SECONDS [API_KEY_ENV])"
    url = fields[0].removesuffix("/").removesuffix("/v1")
    return Target(url, fields[1], fields[3] if len(fields) > 3 else None)


# ---- the fast path of `serve probe` -----------------------------------------------------------

_VALUED = {"--url", "--model", "--api-key-env", "--wait", "--timeout", "--ready-file"}


def _options(argv: list[str]) -> dict[str, str] | None:
    """`--name value` / `--name=value` for the options above; None for anything else (--profile,
    --set, --help, a typo): the full CLI then answers, with its own messages."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name not in _VALUED:
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            i += 1
            value = argv[i]
        out[name] = value
        i += 1
    return out


def fast(argv: list[str]) -> int | None:
    """Run `serve probe ARGS` without the CLI; its exit code, or None where the CLI must."""
    if not argv or argv[0] != "probe" or (opts := _options(argv[1:])) is None:
        return None
    try:
        wait = float(opts.get("--wait", "0"))
        timeout = float(opts.get("--timeout", "2"))
    except ValueError:
        return None
    if "--ready-file" in opts:
        target = from_ready_file(Path(opts["--ready-file"]))
        if isinstance(target, str):
            return _not_ready(target)
        url = opts.get("--url", target.url)
        model = opts.get("--model", target.model)
        key_env = opts.get("--api-key-env", target.api_key_env)
    else:
        url = opts.get("--url", DEFAULT_URL)
        model, key_env = opts.get("--model"), opts.get("--api-key-env")
    api_key = os.environ.get(key_env) if key_env else None
    try:
        result = probe(url, model, api_key, wait=wait, timeout=timeout)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    if not result.ready:
        return _not_ready(result.reason)
    print(f"ready: {url} lists {', '.join(result.models)}")
    return int(ExitCode.OK)


def _not_ready(reason: str) -> int:
    print(f"serve: error: {reason}", file=sys.stderr, flush=True)
    return int(ExitCode.NOT_READY)
