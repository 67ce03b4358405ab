"""Where a client talks to: the server root, its OpenAI `/v1` base, and the API key.

Users paste either form: `http://host:8000` (what `serve launch` prints) or `.../v1` (what the
OpenAI SDK wants, and what managed endpoints such as Hugging Face Inference Endpoints show).
Both are accepted; vLLM's own routes (/tokenize, /health) hang off the root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import ClientError


@dataclass(frozen=True)
class Endpoint:
    root: str  # e.g. http://127.0.0.1:8000
    api_key: str | None = None

    @property
    def v1(self) -> str:
        return f"{self.root}/v1"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def normalize_root(url: str) -> str:
    """`http://h:8000/v1/` -> `http://h:8000`; a URL without a scheme gets http://."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def endpoint(url: str, api_key_env: str | None) -> Endpoint:
    """The endpoint for `--url` and `--api-key-env`; a named but unset variable is an error.

    Without `--api-key-env`, OPENAI_API_KEY is used when set, as the OpenAI SDK and vLLM's
    benchmark do."""
    key = os.environ.get("OPENAI_API_KEY") or None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ClientError(f"--api-key-env: the environment variable {api_key_env} is not set")
    return Endpoint(normalize_root(url), key)
