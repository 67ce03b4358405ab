"""`serve check` and the check `serve launch` runs first. (Stub: filled by the preflight work.)"""

from __future__ import annotations

import typer

from ..profile import Profile


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `serve` app."""


def before_launch(profile: Profile, *, python: str) -> None:
    """Run the preflight checks; raise RefusedError when the profile cannot start."""
