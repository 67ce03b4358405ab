"""serve deploy --target compose: every built-in profile, validated by the compose specification's
own JSON schema (check-jsonschema's vendored copy), numbers read back, golden files kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from openai_server import loader
from openai_server.cli import app
from openai_server.deploy import budgets, compose
from openai_server.launch.options import Timing
from tests.conftest import ecosystem_validator

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "examples" / "deploy" / "compose"
GOLDEN_PROFILES = ("phi3-t4", "h100-tp2")


def validate_compose(path: Path) -> None:
    ecosystem_validator("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(path))


@pytest.mark.parametrize("name", loader.builtin_names())
def test_every_builtin_profile_renders_a_valid_compose_file(name: str, tmp_path: Path) -> None:
    profile = loader.load(name, environ={}).profile
    files = compose.render(profile)
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    validate_compose(tmp_path / "compose.yaml")
    service = yaml.safe_load(files["compose.yaml"])["services"]["serve"]
    gpus = budgets.gpus_needed(profile)
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    assert [d["count"] for d in devices.get("devices", [])] == ([gpus] if gpus else [])
    assert service["healthcheck"]["start_period"] == "1800s"  # the launcher's ready timeout
    assert service["stop_grace_period"] == f"{budgets.stop_grace_s(profile, Timing())}s"
    assert service["shm_size"] == ("16gb" if gpus > 1 else "1gb")
    assert service["ports"] == [f"{profile.effective_port}:{profile.effective_port}"]
    # the mounted profile is the same profile
    again = loader.load_text(files["profile.yaml"], "profile.yaml").profile
    assert again.model_dump(exclude={"extends"}) == profile.model_dump(exclude={"extends"})


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("model: org/m\napi_key_env: MY_KEY\n",
         lambda s: s["environment"]["MY_KEY"].startswith("${MY_KEY:?")),
        ("model: org/m\nshutdown_timeout: 60\n", lambda s: s["stop_grace_period"] == "80s"),
        ("model: org/m\nserver: custom\n", lambda s: s["ports"] == ["7860:7860"]),
        ("model: org/m\ntensor_parallel_size: 2\npipeline_parallel_size: 2\n",
         lambda s: s["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 4
         and s["shm_size"] == "16gb"),
        ("model: org/m\nrestart: always\n", lambda s: s["restart"] == "unless-stopped"),
    ],
)  # fmt: skip
def test_what_the_profile_says_reaches_the_compose_file(text: str, check, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    profile = loader.load_text(text).profile
    files = compose.render(profile)
    (tmp_path / "compose.yaml").write_text(files["compose.yaml"])
    validate_compose(tmp_path / "compose.yaml")
    assert check(yaml.safe_load(files["compose.yaml"])["services"]["serve"])


def test_no_secret_value_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "s3cret-value")
    monkeypatch.setenv("HF_TOKEN", "hf_notwritten")
    files = compose.render(loader.load_text("model: org/m\napi_key_env: MY_KEY\n").profile)
    assert all("s3cret-value" not in t and "hf_notwritten" not in t for t in files.values())


@pytest.mark.parametrize("name", GOLDEN_PROFILES)
def test_golden_files_match_the_renderer(name: str) -> None:
    files = compose.render(loader.load(name, environ={}).profile)
    for file, text in files.items():
        golden = GOLDEN / name / file
        assert golden.read_text() == text, (
            f"{golden} drifted: regenerate with `serve deploy -p {name} -o {golden.parent}`"
        )


def test_serve_deploy_writes_the_files_and_refuses_what_cannot_run(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app, ["deploy", "-p", "h100-tp2", "--gpu", "H100:2", "-o", str(tmp_path)]
    )
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compose.yaml", "profile.yaml"]
    refused = CliRunner().invoke(
        app,
        [
            "deploy",
            "-p",
            "phi3-t4",
            "--gpu",
            "T4",
            "--set",
            "dtype=bfloat16",
            "-o",
            str(tmp_path / "x"),
        ],
    )
    assert refused.exit_code == 4 and "bfloat16" in refused.output
    assert not (tmp_path / "x").exists()


def test_the_default_image_is_tagged_with_this_release() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"serve:{version}" == compose.DEFAULT_IMAGE
