"""Loading profiles: strict YAML, `extends`, SERVE_* environment and --set, with provenance.

Precedence (highest first): --set > environment (SERVE_...) > profile file > `extends` parent >
defaults. Every effective value remembers which layer set it, so `serve render --explain` can
answer "where did this come from?" and every error names the file and line (or the --set / the
variable) that holds the bad value.

Loading is split from parsing (`load_text` takes text): tests feed YAML, not files. The files and
their layers (finding, strict YAML, `extends`, --set, SERVE_*, the merge) are profile_files.py,
which needs no pydantic; this module validates their merge into a Profile.

The SERVE_<KEY> layer is read here by hand rather than by a pydantic-settings source, because it
must keep two things a source does not give: an unknown SERVE_* variable is an error with a
did-you-mean (a settings source skips variables it has no field for, so a typo like
SERVE_MAX_NUM_SEQ would be silently ignored), and every value keeps the name of the variable that
set it, for `serve render --explain`. serve's own variables live in `settings.py`.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError

from . import render
from .catalog import builtin_dir as builtin_dir
from .catalog import builtin_names as builtin_names
from .errors import ProfileError
from .profile import UNECHOED_ERRORS, Profile, Sampling, is_secret_name
from .profile_files import MERGED_MAPPINGS as MERGED_MAPPINGS
from .profile_files import NON_PROFILE_ENV as NON_PROFILE_ENV
from .profile_files import Layer, clip, env_layer, file_layers, merge, parse_yaml, set_layer, shown
from .profile_files import display as display
from .profile_files import find_profile as find_profile
from .profile_files import read_profile as read_profile
from .profile_files import read_stream as read_stream

# An error line is at most this long in all (a value in it: profile_files.MAX_SHOWN).
MAX_LINE = 2000

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Resolved:
    """A validated profile, the file it came from, and where each effective value came from."""

    profile: Profile
    path: Path | None
    sources: dict[str, str] = field(default_factory=dict)

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")


# ---------------------------------------------------------------- validation


def _allowed(loc: tuple[Any, ...]) -> list[str]:
    if loc and loc[0] == "sampling":
        return sorted(Sampling.model_fields)
    return sorted(Profile.model_fields)


def _printable(line: str) -> str:
    """One line, whatever a file name or key held: non-printable characters escaped, clipped."""
    if not line.isprintable():
        line = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in line)
    return clip(line, MAX_LINE)


def _one_line(err: Mapping[str, Any], sources: dict[str, str], fallback: str) -> str:
    ctx = err.get("ctx") or {}
    # an error about one key of a mapping (env.HF_TOKEN) names that key, not the whole mapping
    loc = tuple(str(p) for p in (*err["loc"], *([ctx["key"]] if "key" in ctx else [])))
    key = ".".join(clip(p, 40) for p in loc)
    # the most specific key path that has a known source (a list item's source is its list's)
    origin = next(
        (
            sources[".".join(loc[:i])]
            for i in range(len(loc), 0, -1)
            if ".".join(loc[:i]) in sources
        ),
        fallback,
    )
    if err["type"] == "extra_forbidden":
        name = loc[-1]
        hint = difflib.get_close_matches(name, _allowed(loc[:-1]), n=1)
        if hint:
            return f"{origin}: {key}: unknown key (did you mean {hint[0]!r}?)"
        return f"{origin}: {key}: unknown key; allowed: {', '.join(_allowed(loc[:-1]))}"
    if err["type"] == "missing":
        return f"{origin}: {key}: required key is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    secret = len(loc) > 1 and loc[0] == "env" and is_secret_name(loc[1])
    if err["type"] in UNECHOED_ERRORS or "key" in ctx or secret:
        # never repeat a value that may be a secret: not even in a `--set KEY=VALUE` origin
        return f"{origin.partition('=')[0]}: {key}: {msg}"
    return f"{origin}: {key}: {shown(err['input'])} is not allowed: {msg}"


def validate(data: dict[str, Any], sources: dict[str, str], fallback: str) -> Profile:
    try:
        profile = Profile.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        lines = [_one_line(err, sources, fallback) for err in errors[:4]]
        if len(errors) > 1:
            listed = f": {'; '.join(lines[1:])}" + ("; ..." if len(errors) > 4 else "")
            lines[0] += f" (and {len(errors) - 1} more{listed})"
        raise ProfileError(lines[0]) from None
    # extra_args that contradict the profile (`--port 9000` beside port 8000) are a profile error,
    # found here so that `validate` gives the same verdict as render, check and launch
    try:
        render.check_extra_args(profile)
    except ProfileError as e:
        raise ProfileError(f"{sources.get('extra_args', fallback)}: {e.message}") from None
    return profile


def _one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Whatever a profile holds, its error is one printable line of bounded length."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ProfileError as e:
            raise ProfileError(_printable(e.message)) from None

    return wrapper


@_one_line_errors
def load(
    ref: str, *, sets: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> Resolved:
    """Resolve a profile reference with all layers applied and validated."""
    path = find_profile(ref)
    layers = file_layers(path)
    layers.append(env_layer(os.environ if environ is None else environ, Profile.model_fields))
    layers.append(set_layer(sets or []))
    data, sources = merge(layers)
    return Resolved(validate(data, sources, display(path)), path, sources)


@_one_line_errors
def load_text(text: str, source: str = "<profile>", sets: list[str] | None = None) -> Resolved:
    """Validate profile text without files or environment (for tests and `serve validate -`)."""
    data, lines = parse_yaml(text, source)
    if "extends" in data:
        raise ProfileError(f"{source}: extends: not supported for a profile given as text")
    layers = [Layer(data, {k: f"{source}:{n}" for k, n in lines.items()}), set_layer(sets or [])]
    merged, sources = merge(layers)
    return Resolved(validate(merged, sources, source), None, sources)
