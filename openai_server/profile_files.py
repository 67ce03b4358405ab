"""Profile files and their layers, before validation: finding a profile, strict YAML, `extends`,
the SERVE_* environment and --set layers, and their merge with each value's source.

No pydantic here: `serve profiles` lists the built-in profiles with this module alone, and the
loader (loader.py) validates what the merge gives. Precedence (highest first): --set >
environment (SERVE_...) > profile file > `extends` parent > defaults.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from . import yaml_safety
from .catalog import builtin_dir, builtin_names
from .errors import ProfileError

# Keys whose mapping values merge key by key across layers; every other value is replaced whole.
MERGED_MAPPINGS = ("sampling", "env")
ENV_PREFIX = "SERVE_"
# SERVE_* variables that configure serve itself (settings.py), not the profile.
NON_PROFILE_ENV = frozenset({"SERVE_CACHE_DIR", "SERVE_PROFILE", "SERVE_FLAGS_CACHE"})
PROFILE_SUFFIXES = (".yaml", ".yml")
# A chain of `extends` longer than this is a mistake (the built-in profiles use one level), and
# each level is a recursion here.
MAX_EXTENDS = 16
# An error line repeats a value (or a --set item, a variable's name) at most this long.
MAX_SHOWN = 80

Path_ = tuple[str, ...]


@dataclass
class Layer:
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
        raise ProfileError(f"{source}: keys must be strings, got {shown(bad[0])}")
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


def file_layers(path: Path, chain: tuple[Path, ...] = ()) -> list[Layer]:
    """The layers of a profile file: its `extends` ancestors first, then the file itself."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(display(p) for p in (*chain, resolved))
        raise ProfileError(f"{display(path)}: extends: cycle {cycle}")
    name = display(path)
    data, lines = parse_yaml(read_profile(path, name), name)
    labels = {key: f"{name}:{line}" for key, line in lines.items()}
    layers: list[Layer] = []
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
        layers = file_layers(parent_path, (*chain, resolved))
        for layer in layers:  # a parent's description describes the parent, not this profile
            layer.data.pop("description", None)
    layers.append(Layer(data, labels))
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


def set_layer(assignments: list[str]) -> Layer:
    data: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for item in assignments:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ProfileError(f"--set {item}: expected KEY=VALUE (e.g. --set max_num_seqs=32)")
        label = f"--set {clip(item)}"
        # environment values are strings by nature: --set env.X=1 means "1", not the number
        parsed = value if key.startswith("env.") else _parse_value(value, label)
        _deep_update(data, _nest(key, parsed, label))
        labels[key] = label
    return Layer(data, labels)


def env_layer(environ: Mapping[str, str], known: Collection[str]) -> Layer:
    """The SERVE_<KEY> variables of `environ` as a layer; `known`: the profile's keys (an unknown
    SERVE_* variable is an error with a did-you-mean, never silently ignored)."""
    data: dict[str, Any] = {}
    labels: dict[str, str] = {}
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
        label = f"environment {clip(var)}"
        parsed = value if key.startswith("env.") else _parse_value(value, label)  # as --set env.X
        _deep_update(data, _nest(key, parsed, label))
        labels[key] = label
    return Layer(data, labels)


def _deep_update(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def merge(layers: list[Layer]) -> tuple[dict[str, Any], dict[str, str]]:
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


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any) -> str:
    """A value as an error line repeats it: repr (escapes control characters), clipped."""
    try:
        return clip(repr(value))
    except ValueError:  # int.__repr__ refuses more than 4,300 digits
        return "(a value too long to show)"


def description(path: Path) -> str:
    """A profile file's description, read as the loader reads it (a parent's description describes
    the parent, so it is never inherited), unvalidated: `serve profiles` lists the built-in
    profiles with it, which tests/test_loader.py validates whole."""
    merged, _ = merge(file_layers(path))
    value = merged.get("description", "")
    return value if isinstance(value, str) else ""


def profiles_text() -> str:
    """What `serve profiles` prints: a line per built-in profile, its name and its description."""
    lines = (
        f"{name:<14} {description(builtin_dir() / f'{name}.yaml')}" for name in builtin_names()
    )
    return "".join(f"{line}\n" for line in lines)
