"""Hostile and wrong fleet files: one line naming the file, the key (the model) and what is allowed,
exit 3, nothing started. Real processes for the CLI's exit codes; the spec's functions for the rest."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from openai_server.errors import ExitCode, ProfileError
from openai_server.fleet.spec import ENGINE_HOST, load_fleet
from tests.conftest import ROOT, SERVE


def fleet(tmp: Path, text: str) -> Path:
    path = tmp / "fleet.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("models: {}\n", "models: Dictionary should have at least 1 item"),
        ("port: 8000\n", "models: Field required"),
        ("models:\n  a: {profile: tiny-cpu}\nprot: 1\n", "fleet.yaml:3: prot: unknown key; allowed"),
        ("models:\n  a: {profile: tiny-cpu, sett: {}}\n", "models.a.sett: unknown key; allowed: "
         "profile, set"),
        ("models:\n  'a b': {profile: tiny-cpu}\n", "cannot be in a model name"),
        ("models:\n  a: {profile: tiny-cpu}\nport: 70000\n", "port: Input should be less than"),
        ("models:\n  a: {profile: nope-profile}\n", "models.a: nope-profile: no such built-in"),
        ("models:\n  a: {profile: ./missing.yaml}\n", "models.a.profile: ./missing.yaml: no such"),
        ("models:\n  a: {profile: tiny-cpu, set: {max_num_seqs: -1}}\n", "models.a: --set "
         "max_num_seqs=-1: max_num_seqs"),
        ("models:\n  a: {profile: tiny-cpu, set: {port_x: 1}}\n", "models.a: "),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("models: &a [*a]\n", "fleet.yaml"),
        ("models:\n  a: {profile: tiny-cpu}\nmax_resident: 0\n", "max_resident: Input should be "
         "greater than or equal to 1"),
        ("models:\n  a: {profile: tiny-cpu}\nmin_residency: -1\n", "min_residency: Input should"),
        ("models:\n  a: {profile: tiny-cpu, pin: 1}\n", "models.a.pin: Input should be a valid "
         "boolean"),
        ("models:\n  a: {profile: tiny-cpu, pin: true}\n  b: {profile: tiny-cpu, pin: true}\n"
         "max_resident: 1\n", "max_resident: 1 is fewer than the pinned models (a, b)"),
    ],
)  # fmt: skip
def test_a_bad_fleet_file_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ProfileError) as caught:
        load_fleet(fleet(tmp_path, text))
    line = caught.value.message
    assert "\n" not in line and says in line, line
    assert line.startswith(str(tmp_path / "fleet.yaml")), line


def test_each_model_is_its_profile_with_the_fleets_name_host_and_port(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text("extends: tiny-cpu\nmax_num_seqs: 4\n")
    f = load_fleet(fleet(tmp_path, "models:\n  chat: {profile: tiny-cpu, set: {seed: 7}}\n"
                                   "  small: {profile: small.yaml}\n"))  # fmt: skip
    chat, small = f.members
    assert (chat.name, small.name) == ("chat", "small")
    assert chat.resolved.profile.model_id == "chat" and chat.resolved.profile.seed == 7
    assert small.resolved.profile.max_num_seqs == 4
    for m in f.members:
        assert m.resolved.profile.host == ENGINE_HOST and m.resolved.profile.port == m.port
    assert chat.port != small.port and small.profile_ref == str(tmp_path / "small.yaml")


def test_serve_fleet_refuses_a_bad_file_with_exit_3_and_starts_nothing(tmp_path: Path) -> None:
    path = fleet(tmp_path, "models:\n  a: {profile: tiny-cpu}\nport: 0\n")
    out = subprocess.run([*SERVE, "fleet", "--file", str(path)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)  # fmt: skip
    assert out.returncode == ExitCode.PROFILE, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("serve: error: ") and "port: Input should be greater than" in line


def test_sleep_mode_asked_for_on_a_host_without_gpus_is_refused(tmp_path: Path) -> None:
    from openai_server.errors import RefusedError
    from openai_server.fleet.placement import check_host
    from openai_server.preflight.gpus import Hardware

    f = load_fleet(fleet(tmp_path, "models:\n  a: {profile: tiny-cpu, sleep: true}\n"))
    with pytest.raises(RefusedError, match=r"models.a.sleep: true needs NVIDIA GPUs"):
        check_host(f.members, f.source, Hardware((), "none"))
