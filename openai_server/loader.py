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
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ProfileError
from .profile import Profile, Sampling

# Keys whose mapping values merge key by key across layers; every other value is replaced whole.
MERGED_MAPPINGS = ("sampling", "env")
ENV_PREFIX = "SERVE_"
# SERVE_* variables that configure serve itself (settings.py), not the profile.
NON_PROFILE_ENV = frozenset({"SERVE_CACHE_DIR", "SERVE_PROFILE", "SERVE_FLAGS_CACHE"})
PROFILE_SUFFIXES = (".yaml", ".yml")

Path_ = tuple[str, ...]


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


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


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
    """Parse one profile document strictly; return the mapping and its key -> line map."""
    try:
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = e.problem or str(e)
        if "could not determine a constructor" in problem:
            problem = (
                f"YAML tags that construct objects are not allowed ({problem.split('tag ')[-1]})"
            )
        raise ProfileError(f"{where}: {problem}") from None
    except yaml.YAMLError as e:
        raise ProfileError(f"{source}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise ProfileError(f"{source}: a profile must be a YAML mapping of keys, got {kind}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ProfileError(f"{source}: keys must be strings, got {bad[0]!r}")
    return data, _key_lines(node) if node is not None else {}


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
    try:
        text = path.read_text()
    except OSError as e:
        raise ProfileError(f"{name}: cannot read: {e.strerror}") from None
    data, lines = parse_yaml(text, name)
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
        layers = _file_layers(parent_path, (*chain, resolved))
        for layer in layers:  # a parent's description describes the parent, not this profile
            layer.data.pop("description", None)
    layers.append(_Layer(data, labels))
    return layers


def _parse_value(text: str) -> Any:
    """A --set / SERVE_* value is a YAML scalar or flow collection: 32, true, [a, b], {k: v}."""
    try:
        return yaml.load(text, Loader=_StrictLoader) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    head, _, rest = dotted.partition(".")
    return {head: _nest(rest, value) if rest else value}


def set_layer(assignments: list[str]) -> _Layer:
    data: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for item in assignments:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ProfileError(f"--set {item}: expected KEY=VALUE (e.g. --set max_num_seqs=32)")
        # environment values are strings by nature: --set env.X=1 means "1", not the number
        parsed = value if key.startswith("env.") else _parse_value(value)
        _deep_update(data, _nest(key, parsed))
        labels[key] = f"--set {item}"
    return _Layer(data, labels)


def env_layer(environ: Mapping[str, str]) -> _Layer:
    data: dict[str, Any] = {}
    labels: dict[str, str] = {}
    known = set(Profile.model_fields)
    for var, value in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var in NON_PROFILE_ENV:
            continue
        key = var[len(ENV_PREFIX) :].lower().replace("__", ".")
        if key.split(".")[0] not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            also = f" (did you mean {ENV_PREFIX}{hint[0].upper()}?)" if hint else ""
            raise ProfileError(f"environment {var}: not a profile key{also}")
        _deep_update(data, _nest(key, _parse_value(value)))
        labels[key] = f"environment {var}"
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


def _one_line(err: Mapping[str, Any], sources: dict[str, str], fallback: str) -> str:
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc)
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
    return f"{origin}: {key}: {err['input']!r} is not allowed: {msg}"


def validate(data: dict[str, Any], sources: dict[str, str], fallback: str) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        lines = [_one_line(err, sources, fallback) for err in errors]
        more = f" (and {len(lines) - 1} more: {'; '.join(lines[1:])})" if len(lines) > 1 else ""
        raise ProfileError(lines[0] + more) from None


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


def load_text(text: str, source: str = "<profile>", sets: list[str] | None = None) -> Resolved:
    """Validate profile text without files or environment (for tests and `serve validate -`)."""
    data, lines = parse_yaml(text, source)
    if "extends" in data:
        raise ProfileError(f"{source}: extends: not supported for a profile given as text")
    layers = [_Layer(data, {k: f"{source}:{n}" for k, n in lines.items()}), set_layer(sets or [])]
    merged, sources = _merge(layers)
    return Resolved(validate(merged, sources, source), None, sources)
