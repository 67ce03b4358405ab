"""Parser names per vLLM release: the `tool_call_parsers` / `reasoning_parsers` of the shipped sets
(read from each wheel's sources by dump_parsers.py), the FlagSet fields, and dump_flags.py's live
reading of the registries."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from openai_server.preflight import dump_parsers, flags
from tests.conftest import requires_vllm

VERSIONS = flags.shipped_versions()


def shipped(version: str) -> flags.FlagSet:
    found = flags.shipped(version)
    assert found is not None, version
    return found


def tools(version: str) -> frozenset[str]:
    names = shipped(version).tool_call_parsers
    assert names is not None, version
    return names


def reasoning(version: str) -> frozenset[str]:
    names = shipped(version).reasoning_parsers
    assert names is not None, version
    return names


@pytest.mark.parametrize("version", VERSIONS)
def test_every_shipped_set_records_both_lists_sorted(version: str) -> None:
    data = json.loads((flags.SHIPPED_DIR / f"vllm-{version}.json").read_text())
    for key in ("tool_call_parsers", "reasoning_parsers"):
        names = data[key]
        assert names and names == sorted(set(names)), (version, key)
        assert all(isinstance(n, str) and n for n in names), (version, key)


@pytest.mark.parametrize("version", VERSIONS)
def test_known_parsers_are_in_every_release(version: str) -> None:
    assert {"hermes", "llama3_json", "mistral", "pythonic", "qwen3_coder", "openai"} <= tools(
        version
    )
    assert {"deepseek_r1", "qwen3", "mistral", "openai_gptoss", "granite"} <= reasoning(version)
    # a tool parser's name is not a reasoning parser's by accident: the lists are separate
    assert "hermes" not in reasoning(version) and "deepseek_r1" not in tools(version)


def test_counts_per_release() -> None:
    counts = {v: (len(tools(v)), len(reasoning(v))) for v in VERSIONS}
    assert counts == {
        "0.26.0": (44, 28),
        "0.27.1": (45, 29),
        "0.28.0": (48, 31),
        "0.29.0": (49, 32),
        "0.30.0": (51, 34),
        "0.31.0": (51, 35),
        "0.32.0": (54, 38),
        "0.33.0": (58, 42),
    }


def test_no_release_drops_a_parser_name() -> None:
    for older, newer in itertools.pairwise(VERSIONS):
        assert tools(older) <= tools(newer), (older, newer)
        assert reasoning(older) <= reasoning(newer), (older, newer)


# (first release that has it, kind, name): absent from the release before, present from it on
ADDED = [
    ("0.27.1", "tool", "kimi_k3"),
    ("0.27.1", "reasoning", "kimi_k3"),
    ("0.28.0", "tool", "dots"),
    ("0.28.0", "reasoning", "ling3"),
    ("0.29.0", "tool", "hy_v4"),
    ("0.30.0", "reasoning", "deepseek_v41"),
    ("0.31.0", "reasoning", "granite_thinking_parser"),
    ("0.32.0", "tool", "qwen3_json"),
    ("0.32.0", "reasoning", "minicpmv"),
    ("0.32.0", "reasoning", "hf"),
    ("0.33.0", "tool", "step5"),
    ("0.33.0", "reasoning", "musespark1x"),
]


@pytest.mark.parametrize(("first", "kind", "name"), ADDED)
def test_a_name_added_in_a_release_is_absent_before_and_present_after(
    first: str, kind: str, name: str
) -> None:
    names = tools if kind == "tool" else reasoning
    at = VERSIONS.index(first)
    assert name not in names(VERSIONS[at - 1])
    assert all(name in names(v) for v in VERSIONS[at:])


def test_031_adds_no_tool_parser() -> None:
    assert tools("0.31.0") == tools("0.30.0")


# ---------------------------------------------------------------- FlagSet


def test_a_set_without_the_lists_loads_with_none() -> None:
    old = {"dist": "vllm", "version": "9.9.0", "format": flags.FORMAT, "flags": {}}
    got = flags.FlagSet.from_json(old, "installed (cache)")
    assert got.tool_call_parsers is None and got.reasoning_parsers is None


def test_lists_load_as_frozensets() -> None:
    data = {
        "dist": "vllm",
        "version": "9.9.0",
        "flags": {},
        "tool_call_parsers": ["hermes", "mistral"],
        "reasoning_parsers": None,  # a registry the dumper could not read
    }
    got = flags.FlagSet.from_json(data, "installed (introspected)")
    assert got.tool_call_parsers == frozenset({"hermes", "mistral"})
    assert got.reasoning_parsers is None


def test_installed_vllm_with_a_shipped_set_keeps_its_parser_lists(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVE_FLAGS_CACHE", str(tmp_path))
    monkeypatch.setattr(flags, "installed_version", lambda python: ("vllm", "0.33.0"))
    got = flags.for_installed("python")
    assert got is not None and got.source == "installed (shipped set)"
    assert got.tool_call_parsers == tools("0.33.0")
    assert got.reasoning_parsers == reasoning("0.33.0")


# ---------------------------------------------------------------- dump_parsers.py (static)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_static_reader_finds_every_registration_form(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "vllm/tool_parsers/__init__.py": """
                '''ToolParserManager.register_lazy_module(name="in_a_docstring", ...)'''
                _TOOL_PARSERS_TO_REGISTER = {"table": ("table_tool_parser", "TableToolParser")}
                for name, (f, c) in _TOOL_PARSERS_TO_REGISTER.items():
                    ToolParserManager.register_lazy_module(name, f, c)
                ToolParserManager.register_lazy_module("lazy", "m", "C")
            """,
            "vllm/tool_parsers/x.py": """
                @ToolParserManager.register_module("one")
                class A: ...

                @ToolParserManager.register_module(["two", "three"])
                class B: ...

                @ToolParserManager.register_module()
                class ByClassName: ...
            """,
            "vllm/reasoning/__init__.py": """
                _REASONING_PARSERS_TO_REGISTER = {"r_table": ("f", "C")}
                ReasoningParserManager.register_lazy_module(name="r_lazy", module_path="m",
                                                            class_name="C")

                @ReasoningParserManager.register_module(name="r_named")
                class R: ...
            """,
        },
    )
    assert dump_parsers.parsers(tmp_path) == {
        "tool_call_parsers": ["ByClassName", "lazy", "one", "table", "three", "two"],
        "reasoning_parsers": ["r_lazy", "r_named", "r_table"],
    }


def test_static_reader_writes_into_a_flag_set(tmp_path: Path) -> None:
    write(tmp_path, {"vllm/reasoning/__init__.py": "_REASONING_PARSERS_TO_REGISTER = {'q': 1}\n"})
    flagset = tmp_path / "set.json"
    flagset.write_text(json.dumps({"version": "9.9.0", "flags": {}}))
    script = Path(dump_parsers.__file__)
    subprocess.run([sys.executable, str(script), str(tmp_path), str(flagset)], check=True)
    data = json.loads(flagset.read_text())
    assert data["reasoning_parsers"] == ["q"] and data["tool_call_parsers"] == []
    assert data["version"] == "9.9.0"


# ---------------------------------------------------------------- dump_flags.py (live)

FAKE_VLLM = {
    "vllm/__init__.py": "",
    "vllm/utils/__init__.py": "from argparse import ArgumentParser as FlexibleArgumentParser\n",
    "vllm/entrypoints/__init__.py": "",
    "vllm/entrypoints/openai/__init__.py": "",
    "vllm/entrypoints/openai/cli_args.py": """
        def make_arg_parser(parser):
            parser.add_argument("--tool-call-parser")
            return parser
    """,
}


def dump(root: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(flags.DUMPER)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        cwd=root,
    )
    data: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def test_dumper_reads_the_live_registries(tmp_path: Path) -> None:
    write(
        tmp_path,
        FAKE_VLLM
        | {
            # 0.26 to 0.33: vllm.tool_parsers, with list_registered (eager and lazy names)
            "vllm/tool_parsers/__init__.py": """
                class ToolParserManager:
                    tool_parsers = {"mistral": object}
                    lazy_parsers = {"hermes": ("m", "C")}

                    @classmethod
                    def list_registered(cls):
                        return sorted(set(cls.tool_parsers) | set(cls.lazy_parsers))
            """,
            # an older manager: no list_registered, the eager dict only
            "vllm/reasoning/__init__.py": """
                class ReasoningParserManager:
                    reasoning_parsers = {"qwen3": object, "deepseek_r1": object}
            """,
        },
    )
    data = dump(tmp_path)
    assert "--tool-call-parser" in data["flags"]  # type: ignore[operator]
    assert data["tool_call_parsers"] == ["hermes", "mistral"]
    assert data["reasoning_parsers"] == ["deepseek_r1", "qwen3"]


def test_dumper_gives_null_for_a_registry_it_cannot_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        FAKE_VLLM
        | {
            # before 0.26 the tool manager lived here
            "vllm/entrypoints/openai/tool_parsers/__init__.py": """
                class ToolParserManager:
                    tool_parsers = {"hermes": object}
            """,
            "vllm/reasoning/__init__.py": "raise ImportError('broken')\n",
        },
    )
    data = dump(tmp_path)
    assert data["tool_call_parsers"] == ["hermes"]
    assert data["reasoning_parsers"] is None
    got = flags.FlagSet.from_json(data, "installed (introspected)")
    assert got.tool_call_parsers == {"hermes"} and got.reasoning_parsers is None


@pytest.mark.e2e
@requires_vllm
def test_shipped_lists_for_the_installed_vllm_equal_its_live_registries() -> None:
    _dist, version = flags.installed_version(sys.executable) or ("", "")
    if version not in VERSIONS:
        pytest.skip(f"no shipped set for vLLM {version}")
    introspected = flags.introspect(sys.executable)
    assert introspected["tool_call_parsers"] == sorted(tools(version))
    assert introspected["reasoning_parsers"] == sorted(reasoning(version))
