"""Run over an unpacked wheel's sources: print the tool-call and reasoning parser names of that
vLLM release as JSON, read with `ast` (no vLLM import, so no torch).

    python dump_parsers.py SRC [FLAGSET.json]

SRC is the folder that holds `vllm/` (e.g. `unzip vllm-X.whl 'vllm/*.py' -d SRC`). With a flag set
file, the lists are written into it as `tool_call_parsers` / `reasoning_parsers` (how the shipped
sets in flagsets/ got them); dump_flags.py records the same keys from a live vLLM.

Standalone (stdlib only). The registrations found: the lazy tables `_TOOL_PARSERS_TO_REGISTER` /
`_REASONING_PARSERS_TO_REGISTER` (name -> (module, class), in vllm/tool_parsers/__init__.py and
vllm/reasoning/__init__.py in 0.26 to 0.33), and calls of `ToolParserManager` /
`ReasoningParserManager`'s `register_lazy_module(name, ...)` and `register_module(name)` (one name
or a list; as a decorator without a name, the class's name), anywhere under vllm/. A registration
whose name is not a literal is reported on stderr and skipped (in 0.26 to 0.33, only the two loops
that register the lazy tables' entries, which are read from the tables themselves).
"""

import ast
import json
import sys
from pathlib import Path

MANAGERS = {"ToolParserManager": "tool_call_parsers", "ReasoningParserManager": "reasoning_parsers"}
TABLES = {
    "_TOOL_PARSERS_TO_REGISTER": "tool_call_parsers",
    "_REASONING_PARSERS_TO_REGISTER": "reasoning_parsers",
}


def _literal_names(node: ast.expr | None) -> list[str] | None:
    """'x' -> ['x'], ['x', 'y'] -> both; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.List | ast.Tuple):
        names = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        if len(names) == len(node.elts) and all(isinstance(n, str) for n in names):
            return [str(n) for n in names]
    return None


def _registration(call: ast.Call) -> tuple[str, ast.expr | None] | None:
    """(registry key, the name argument) for a Manager.register_[lazy_]module(...) call."""
    func = call.func
    if not (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in MANAGERS
        and func.attr in ("register_module", "register_lazy_module")
    ):
        return None
    named = [k.value for k in call.keywords if k.arg == "name"]
    arg = call.args[0] if call.args else (named[0] if named else None)
    return MANAGERS[func.value.id], arg


def scan(path: Path, found: dict[str, set[str]]) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    decorators: dict[int, str] = {}  # id(decorator call) -> the decorated class's name
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            decorators.update({id(d): node.name for d in node.decorator_list})
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in TABLES:
                    for key in node.value.keys:
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            found[TABLES[target.id]].add(key.value)
        if not isinstance(node, ast.Call) or (hit := _registration(node)) is None:
            continue
        registry, arg = hit
        names = _literal_names(arg)
        if arg is None and id(node) in decorators:
            names = [decorators[id(node)]]  # @register_module() without a name: the class's name
        if names is None:
            print(f"skipped (name not a literal): {path}:{node.lineno}", file=sys.stderr)
            continue
        found[registry].update(names)


def parsers(src: Path) -> dict[str, list[str]]:
    found: dict[str, set[str]] = {key: set() for key in MANAGERS.values()}
    for path in sorted((src / "vllm").rglob("*.py")):
        scan(path, found)
    return {key: sorted(names) for key, names in found.items()}


def main() -> None:
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    found = parsers(Path(sys.argv[1]))
    if len(sys.argv) == 2:
        json.dump(found, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    flagset = Path(sys.argv[2])
    data = json.loads(flagset.read_text()) | found
    flagset.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
