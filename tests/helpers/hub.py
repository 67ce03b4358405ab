"""huggingface_hub with its HTTP layer intercepted: the real client, its requests answered here.

huggingface_hub >= 1.0 builds its HTTP client with httpx (2.x: the httpx2 fork) through a client
factory; tests swap the factory for one whose transport is a function of the request, so that
no request leaves this machine and each one can be inspected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import huggingface_hub
from huggingface_hub.utils import _http as hub_http

httpx: Any = getattr(hub_http, "httpx2", None) or hub_http.httpx


@contextmanager
def intercepted(answer: Callable[[Any], Any]) -> Iterator[None]:
    """Every request huggingface_hub sends goes to `answer(request) -> httpx.Response`."""
    huggingface_hub.set_client_factory(
        lambda: httpx.Client(transport=httpx.MockTransport(answer), follow_redirects=True)
    )
    try:
        yield
    finally:
        huggingface_hub.set_client_factory(hub_http.default_client_factory)
