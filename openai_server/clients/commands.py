"""`serve smoke`, `serve chat`, `serve bench`. (Stub: filled by the clients work.)"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `serve` app."""


def after_ready(base_url: str, model: str, api_key: str | None) -> None:
    """`serve launch --smoke`: raise ClientError when the fresh server does not answer properly."""
