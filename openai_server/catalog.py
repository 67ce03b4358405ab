"""The installation's built-in files, found with the standard library alone: its profiles and the
committed profile schema (`serve schema` prints it; profile_files.profiles_text the profiles).

Both are constants of an installation, so `main.py` prints them before the CLI is imported when
the command is typed without options; `cli.py`'s commands print the same text.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ProfileError


def builtin_dir() -> Path:
    """The built-in profiles: packaged in the wheel, or the repository's profiles/ (editable)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_profiles", here.parent / "profiles"):
        if candidate.is_dir():
            return candidate
    raise ProfileError("built-in profiles are missing from this installation (reinstall serve)")


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def schema_text() -> str:
    """The committed profiles/schema.json, which tests/test_schema_and_cli.py holds equal to the
    Profile model's schema (generating it builds pydantic's schema machinery: 0.1 s)."""
    return (builtin_dir() / "schema.json").read_text(encoding="utf-8")
