"""Where a client talks to: the server root, its OpenAI `/v1` base, and the API key.

Users paste either form: `http://host:8000` (what `serve launch` prints) or `.../v1` (what the
OpenAI SDK wants, and what managed endpoints such as Hugging Face Inference Endpoints show).
Both are accepted; vLLM's own routes (/tokenize, /health) hang off the root.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ClientError
from ..probe import auth_headers

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Endpoint:
    root: str  # e.g. http://127.0.0.1:8000
    api_key: str | None = None

    @property
    def v1(self) -> str:
        return f"{self.root}/v1"

    def headers(self) -> dict[str, str]:
        return auth_headers(self.api_key)


def normalize_root(url: str) -> str:
    """`http://h:8000/v1/` -> `http://h:8000`; a URL without a scheme gets http://."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def endpoint(url: str | None, api_key_env: str | None) -> Endpoint:
    """The endpoint for `--url` and `--api-key-env`; a named but unset variable is an error.

    Without `--url`, OPENAI_BASE_URL, else the local default. Without `--api-key-env`,
    OPENAI_API_KEY is used when set, as the OpenAI SDK and vLLM's benchmark do."""
    from ..settings import settings

    env = settings()
    url = url or env.openai_base_url or DEFAULT_URL
    key = env.openai_api_key.get_secret_value() if env.openai_api_key else None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ClientError(f"--api-key-env: the environment variable {api_key_env} is not set")
    return Endpoint(normalize_root(url), key)


def default_model(model: str | None) -> str | None:
    """`--model`, else the MODEL variable, else None (the only model the server lists)."""
    from ..settings import settings

    return model or settings().model


def pick_model(listed: Sequence[str], model: str | None) -> str:
    """`model` when the server lists it; without one, the only model listed.

    Raises LookupError with the reason, which each client words as its own failure."""
    names = ", ".join(listed) or "none"
    if model is not None:
        if model not in listed:
            raise LookupError(f"{model!r} is not served (listed: {names})")
        return model
    if len(listed) != 1:
        raise LookupError(f"pass --model: the server lists {names}")
    return listed[0]
