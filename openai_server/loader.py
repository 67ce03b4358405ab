"""Loading profiles: strict YAML, `extends`, SERVE_* environment and --set, with provenance.

Precedence (highest first): --set > environment (SERVE_...) > profile file > `extends` parent >
defaults. Every effective value remembers which layer set it, so `serve render --explain` can
answer "where did this come from?" and every error names the file and line (or the --set / the
variable) that holds the bad value.

Loading is split from parsing (`load_text` takes text): tests feed YAML, not files.

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
from typing import Any, BinaryIO, ParamSpec, TypeVar

import yaml
from pydantic import ValidationError

from . import render, yaml_safety
from .errors import ProfileError
from .profile import UNECHOED_ERRORS, Profile, Sampling, is_secret_name

# Keys whose mapping values merge key by key across layers; every other value is replaced whole.
MERGED_MAPPINGS = ("sampling", "env")
ENV_PREFIX = "SERVE_"
# SERVE_* variables that configure serve itself (settings.py), not the profile.
NON_PROFILE_ENV = frozenset({"SERVE_CACHE_DIR", "SERVE_PROFILE", "SERVE_FLAGS_CACHE"})
PROFILE_SUFFIXES = (".yaml", ".yml")
# A chain of `extends` longer than this is a mistake (the built-in profiles use one level), and
# each level is a recursion here.
MAX_EXTENDS = 16
# An error line repeats a value at most this long, and is at most MAX_LINE long in all.
MAX_SHOWN = 80
MAX_LINE = 2000

Path_ = tuple[str, ...]
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


@dataclass
class _Layer:
    data: dict[str, Any]
    # dotted key -> label such as "profiles/phi3-t4.yaml:7" or "--set port=8001"
    labels: dict[str, str]


# ---------------------------------------------------------------- strict YAML


def _key_lines(node: yaml.Node, prefix: Path_ = ()) -> dict[str, int]:
    """Dotted key path -> 1-based line of its value, for error messages and --explain."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            lines[".".join(path)] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    return lines


def parse_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse one profile document strictly, within yaml_safety's limits; return the mapping and
    its key -> line map."""
    try:
        node, data = yaml_safety.parse(text)
    except yaml_safety.Refused as e:
        raise ProfileError(_at(source, e.line, e.message)) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or str(e)
        if e.context and problem.startswith("but "):  # "expected a single document ... but found"
            problem = f"{e.context} {problem}"
        if "could not determine a constructor" in problem:
            problem = (
                f"YAML tags that construct objects are not allowed ({problem.split('tag ')[-1]})"
            )
        raise ProfileError(_at(source, mark.line + 1 if mark else None, problem)) from None
    except yaml.YAMLError as e:  # a ReaderError has a position, not a mark, and several lines
        raise ProfileError(f"{source}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise ProfileError(f"{source}: a profile must be a YAML mapping of keys, got {kind}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ProfileError(f"{source}: keys must be strings, got {_shown(bad[0])}")
    return data, _key_lines(node) if node is not None else {}


def _at(source: str, line: int | None, message: str) -> str:
    return f"{source}:{line}: {message}" if line else f"{source}: {message}"


def read_profile(path: Path, name: str) -> str:
    """A profile file's text (a file over yaml_safety.MAX_BYTES is refused unread)."""
    try:
        with path.open("rb") as f:
            return read_stream(f, name, size=os.fstat(f.fileno()).st_size)
    except OSError as e:
        raise ProfileError(f"{name}: cannot read: {e.strerror}") from None


def read_stream(stream: BinaryIO, name: str, size: int | None = None) -> str:
    """A profile's text from a binary stream (a file, stdin): at most MAX_BYTES + 1 bytes are
    read (a pipe, or a file that grows, has no size to check first), and they must be UTF-8."""
    try:
        if size is not None:
            yaml_safety.check_size(size)
        return yaml_safety.decode(stream.read(yaml_safety.MAX_BYTES + 1))
    except yaml_safety.Refused as e:
        raise ProfileError(_at(name, e.line, e.message)) from None


# ---------------------------------------------------------------- finding profiles


def builtin_dir() -> Path:
    """The built-in profiles: packaged in the wheel, or the repository's profiles/ (editable)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_profiles", here.parent / "profiles"):
        if candidate.is_dir():
            return candidate
    raise ProfileError("built-in profiles are missing from this installation (reinstall serve)")


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def find_profile(ref: str, relative_to: Path | None = None) -> Path:
    """A profile reference is a path (has a '/' or a .yaml suffix, or exists) or a built-in name."""
    looks_like_path = "/" in ref or ref.endswith(PROFILE_SUFFIXES)
    if looks_like_path:
        path = (relative_to / ref) if relative_to and not Path(ref).is_absolute() else Path(ref)
        if not path.is_file():
            raise ProfileError(f"{ref}: no such profile file")
        return path
    path = builtin_dir() / f"{ref}.yaml"
    if path.is_file():
        return path
    if Path(ref).is_file():
        return Path(ref)
    hint = difflib.get_close_matches(ref, builtin_names(), n=1)
    also = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ProfileError(
        f"{ref}: no such built-in profile{also}; built-in: {', '.join(builtin_names())}"
    )


def display(path: Path) -> str:
    """A path as a person would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- layers


def _file_layers(path: Path, chain: tuple[Path, ...] = ()) -> list[_Layer]:
    """The layers of a profile file: its `extends` ancestors first, then the file itself."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(display(p) for p in (*chain, resolved))
        raise ProfileError(f"{display(path)}: extends: cycle {cycle}")
    name = display(path)
    data, lines = parse_yaml(read_profile(path, name), name)
    labels = {key: f"{name}:{line}" for key, line in lines.items()}
    layers: list[_Layer] = []
    parent = data.get("extends")
    if parent is not None:
        if not isinstance(parent, str):
            raise ProfileError(f"{labels['extends']}: extends: must be a profile name or path")
        try:
            parent_path = find_profile(parent, relative_to=path.parent)
        except ProfileError as e:
            raise ProfileError(f"{labels['extends']}: extends: {e.message}") from None
        if len(chain) + 1 >= MAX_EXTENDS:
            raise ProfileError(
                f"{labels['extends']}: extends: a chain of more than {MAX_EXTENDS} profiles; "
                "extend a built-in profile or a file that extends one"
            )
        layers = _file_layers(parent_path, (*chain, resolved))
        for layer in layers:  # a parent's description describes the parent, not this profile
            layer.data.pop("description", None)
    layers.append(_Layer(data, labels))
    return layers


def _parse_value(text: str, label: str) -> Any:
    """A --set / SERVE_* value is a YAML scalar or flow collection: 32, true, [a, b], {k: v},
    within the same limits as a file. Text that is not YAML stays text (the profile's own checks
    then judge it, naming the key)."""
    if not text.strip():
        return ""
    try:
        return yaml_safety.parse(text)[1]
    except yaml_safety.LimitExceeded as e:
        raise ProfileError(f"{label}: {e.message}") from None
    except (yaml_safety.Refused, yaml.YAMLError):
        return text


def _nest(dotted: str, value: Any, label: str) -> dict[str, Any]:
    parts = dotted.split(".")
    if len(parts) > yaml_safety.MAX_DEPTH:  # `--set a.a.a...`: merged recursively below
        raise ProfileError(f"{label}: a key deeper than {yaml_safety.MAX_DEPTH} levels")
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def set_layer(assignments: list[str]) -> _Layer:
    data: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for item in assignments:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ProfileError(f"--set {item}: expected KEY=VALUE (e.g. --set max_num_seqs=32)")
        label = f"--set {_clip(item)}"
        # environment values are strings by nature: --set env.X=1 means "1", not the number
        parsed = value if key.startswith("env.") else _parse_value(value, label)
        _deep_update(data, _nest(key, parsed, label))
        labels[key] = label
    return _Layer(data, labels)


def env_layer(environ: Mapping[str, str]) -> _Layer:
    data: dict[str, Any] = {}
    labels: dict[str, str] = {}
    known = set(Profile.model_fields)
    for var, value in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var in NON_PROFILE_ENV:
            continue
        head, dot, rest = var[len(ENV_PREFIX) :].replace("__", ".").partition(".")
        # a variable's name under env keeps its case: SERVE_ENV__HF_HOME sets HF_HOME
        key = head.lower() + dot + (rest if head.lower() == "env" else rest.lower())
        if key.split(".")[0] not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            also = f" (did you mean {ENV_PREFIX}{hint[0].upper()}?)" if hint else ""
            raise ProfileError(f"environment {var}: not a profile key{also}")
        label = f"environment {_clip(var)}"
        parsed = value if key.startswith("env.") else _parse_value(value, label)  # as --set env.X
        _deep_update(data, _nest(key, parsed, label))
        labels[key] = label
    return _Layer(data, labels)


def _deep_update(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _merge(layers: list[_Layer]) -> tuple[dict[str, Any], dict[str, str]]:
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.data.items():
            if (
                key in MERGED_MAPPINGS
                and isinstance(value, dict)
                and isinstance(merged.get(key), dict)
            ):
                merged[key].update(value)
                for sub in value:
                    sources[f"{key}.{sub}"] = layer.labels.get(
                        f"{key}.{sub}", layer.labels.get(key, "?")
                    )
            else:
                merged[key] = dict(value) if isinstance(value, dict) else value
                # a replaced mapping forgets its old sub-keys' sources
                for stale in [s for s in sources if s.startswith(f"{key}.")]:
                    del sources[stale]
                sources[key] = layer.labels.get(key, "?")
                if isinstance(value, dict) and key in MERGED_MAPPINGS:
                    for sub in value:
                        sources[f"{key}.{sub}"] = layer.labels.get(f"{key}.{sub}", sources[key])
    return merged, sources


# ---------------------------------------------------------------- validation


def _allowed(loc: tuple[Any, ...]) -> list[str]:
    if loc and loc[0] == "sampling":
        return sorted(Sampling.model_fields)
    return sorted(Profile.model_fields)


def _clip(text: str, limit: int = MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str:
    """A value as an error line repeats it: repr (escapes control characters), clipped."""
    try:
        return _clip(repr(value))
    except ValueError:  # int.__repr__ refuses more than 4,300 digits
        return "(a value too long to show)"


def _printable(line: str) -> str:
    """One line, whatever a file name or key held: non-printable characters escaped, clipped."""
    if not line.isprintable():
        line = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in line)
    return _clip(line, MAX_LINE)


def _one_line(err: Mapping[str, Any], sources: dict[str, str], fallback: str) -> str:
    ctx = err.get("ctx") or {}
    # an error about one key of a mapping (env.HF_TOKEN) names that key, not the whole mapping
    loc = tuple(str(p) for p in (*err["loc"], *([ctx["key"]] if "key" in ctx else [])))
    key = ".".join(_clip(p, 40) for p in loc)
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
    return f"{origin}: {key}: {_shown(err['input'])} is not allowed: {msg}"


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
    layers = _file_layers(path)
    layers.append(env_layer(os.environ if environ is None else environ))
    layers.append(set_layer(sets or []))
    data, sources = _merge(layers)
    return Resolved(validate(data, sources, display(path)), path, sources)


@_one_line_errors
def load_text(text: str, source: str = "<profile>", sets: list[str] | None = None) -> Resolved:
    """Validate profile text without files or environment (for tests and `serve validate -`)."""
    data, lines = parse_yaml(text, source)
    if "extends" in data:
        raise ProfileError(f"{source}: extends: not supported for a profile given as text")
    layers = [_Layer(data, {k: f"{source}:{n}" for k, n in lines.items()}), set_layer(sets or [])]
    merged, sources = _merge(layers)
    return Resolved(validate(merged, sources, source), None, sources)
