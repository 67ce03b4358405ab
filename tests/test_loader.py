"""Strict profile loading: every bad input is refused with one line naming file, key, value."""

from __future__ import annotations

from pathlib import Path

import pytest

from openai_server import loader
from openai_server.errors import ProfileError

BASE = "model: org/m\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown key, with a did-you-mean
        (
            BASE + "max_num_seq: 16\n",
            "<t>:2: max_num_seq: unknown key (did you mean 'max_num_seqs'?)",
        ),
        (BASE + "sampling:\n  temprature: 0.1\n", "<t>:3: sampling.temprature: unknown key"),
        # wrong types: strict, no coercion
        (
            BASE + "max_num_seqs: '16'\n",
            "<t>:2: max_num_seqs: '16' is not allowed: Input should be a valid integer",
        ),
        (
            BASE + "enforce_eager: 1\n",
            "<t>:2: enforce_eager: 1 is not allowed: Input should be a valid boolean",
        ),
        # ranges and closed sets
        (
            BASE + "max_num_seqs: 0\n",
            "max_num_seqs: 0 is not allowed: Input should be greater than or equal to 1",
        ),
        (BASE + "gpu_memory_utilization: 1.5\n", "gpu_memory_utilization: 1.5 is not allowed"),
        (BASE + "dtype: bf16\n", "dtype: 'bf16' is not allowed: Input should be 'auto', 'half'"),
        (BASE + "quantization: int3\n", "quantization: 'int3' is not allowed"),
        (BASE + "sampling:\n  top_p: 0\n", "sampling.top_p: 0 is not allowed"),
        # structure
        (BASE + "model: other\n", "<t>:2: duplicate key 'model' (first at line 1)"),
        ("- model: a\n", "<t>: a profile must be a YAML mapping of keys, got list"),
        ("", "<t>: a profile must be a YAML mapping of keys, got empty"),
        (
            "model: !!python/object/apply:os.system ['true']\n",
            "YAML tags that construct objects are not allowed",
        ),
        ("model: [unclosed\n", "<t>:2:"),
        ("dtype: half\n", "<t>: model: required key is missing"),
        # secrets never in the profile
        (
            BASE + "api_key_env: 'my key'\n",
            "api_key_env: 'my key' is not allowed: must be an environment variable name",
        ),
        (
            BASE + "extra_args: ['--api-key', 'x']\n",
            "extra_args: --api-key: a secret must not be written in a profile",
        ),
    ],
)
def test_bad_profile_is_refused_with_one_line(text: str, expected: str) -> None:
    with pytest.raises(ProfileError) as e:
        loader.load_text(text, "<t>")
    assert expected in e.value.message
    assert "\n" not in e.value.message
    assert "Traceback" not in e.value.message


def test_valid_profile_round_trips() -> None:
    r = loader.load_text(BASE + "max_num_seqs: 8\nsampling:\n  temperature: 0.5\n", "<t>")
    assert r.profile.max_num_seqs == 8
    assert r.profile.sampling.temperature == 0.5
    assert r.source_of("max_num_seqs") == "<t>:2"
    assert r.source_of("dtype") == "default"


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def test_precedence_set_over_env_over_file_over_parent_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "parent.yaml", "model: org/parent\nmax_num_seqs: 4\nmax_model_len: 1024\nport: 9000\n"
          "sampling:\n  temperature: 0.1\n  top_p: 0.5\n")  # fmt: skip
    write(tmp_path, "child.yaml", "extends: parent.yaml\nmax_model_len: 2048\nport: 9001\n"
          "sampling:\n  top_p: 0.9\n")  # fmt: skip
    env = {"SERVE_PORT": "9002", "SERVE_MAX_NUM_BATCHED_TOKENS": "4096"}
    r = loader.load("./child.yaml", sets=["max_num_batched_tokens=8192"], environ=env)
    p = r.profile
    assert p.model == "org/parent" and r.source_of("model") == "parent.yaml:1"
    assert p.max_num_seqs == 4
    assert p.max_model_len == 2048 and r.source_of("max_model_len") == "child.yaml:2"
    assert p.port == 9002 and r.source_of("port") == "environment SERVE_PORT"
    assert p.max_num_batched_tokens == 8192
    assert r.source_of("max_num_batched_tokens") == "--set max_num_batched_tokens=8192"
    # mappings merge key by key
    assert p.sampling.temperature == 0.1 and r.source_of("sampling.temperature") == "parent.yaml:6"
    assert p.sampling.top_p == 0.9 and r.source_of("sampling.top_p") == "child.yaml:5"
    assert p.enforce_eager is None and r.source_of("enforce_eager") == "default"


def test_set_values_are_typed_and_dotted(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE)
    r = loader.load(str(path), sets=["enforce_eager=false", "sampling.top_k=20", "env.A=b", "env.N=1",
                                     "extra_args=[--foo, '1']"], environ={})  # fmt: skip
    assert r.profile.enforce_eager is False
    assert r.profile.sampling.top_k == 20
    assert r.profile.env == {"A": "b", "N": "1"}
    assert r.profile.extra_args == ["--foo", "1"]


def test_bad_set_value_names_the_set(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE)
    with pytest.raises(ProfileError) as e:
        loader.load(str(path), sets=["max_num_seqs=0"], environ={})
    assert e.value.message.startswith("--set max_num_seqs=0: max_num_seqs: 0 is not allowed")


def test_serve_env_variables_keep_their_name_and_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE)
    r = loader.load(str(path), environ={"SERVE_ENV__HF_HOME": "/data", "SERVE_ENV__N": "1"})
    assert r.profile.env == {"HF_HOME": "/data", "N": "1"}
    assert r.source_of("env.HF_HOME") == "environment SERVE_ENV__HF_HOME"


def test_unknown_serve_environment_variable_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE)
    with pytest.raises(ProfileError) as e:
        loader.load(str(path), environ={"SERVE_MAX_NUM_SEQ": "3"})
    assert (
        "environment SERVE_MAX_NUM_SEQ: not a profile key (did you mean SERVE_MAX_NUM_SEQS?)"
        in (e.value.message)
    )


def test_extends_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "extends: b.yaml\nmodel: x\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\nmodel: y\n")
    with pytest.raises(ProfileError, match="extends: cycle"):
        loader.load(str(tmp_path / "a.yaml"), environ={})


def test_unknown_builtin_profile_suggests_names() -> None:
    with pytest.raises(ProfileError, match="did you mean 'tiny-cpu'"):
        loader.load("tiny-cp", environ={})


def test_every_builtin_profile_loads() -> None:
    for name in loader.builtin_names():
        assert loader.load(name, environ={}).profile.description


def test_a_profiles_listed_description_is_its_own_never_its_parents(tmp_path: Path) -> None:
    from openai_server.profile_files import description

    (tmp_path / "parent.yaml").write_text("description: the parent\nmodel: m\n")
    (tmp_path / "quiet.yaml").write_text("extends: ./parent.yaml\n")
    (tmp_path / "own.yaml").write_text("extends: ./parent.yaml\ndescription: mine\n")
    assert description(tmp_path / "quiet.yaml") == ""
    assert description(tmp_path / "own.yaml") == "mine"
    assert loader.load(str(tmp_path / "quiet.yaml"), environ={}).profile.description == ""
