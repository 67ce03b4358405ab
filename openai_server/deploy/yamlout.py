"""YAML as the deploy targets write it: key order kept, multi-line text as a literal block.

A profile embedded in a ConfigMap or an environment variable stays readable (and diffs line by
line in the golden files) instead of becoming one quoted line of `\\n` escapes. PyYAML falls back
to a quoted style by itself where a block cannot hold the text (trailing spaces, for example).
"""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def dump_all(documents: list[Any]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
