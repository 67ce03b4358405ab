"""serve deploy --target skyserve, validated by SkyPilot itself.

SkyPilot cannot share serve's venv (it pins click<8.2 and uvicorn<0.36), so the Makefile installs
it into .venv/skypilot, and tests/helpers/skypilot_check.py, run by that interpreter, loads each
rendered file with SkyPilot's own task and service loaders (schema validation included) and prints
what SkyPilot understood; the tests compare that with the profile.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from openai_server import loader
from openai_server.cli import app
from openai_server.deploy import budgets, skyserve
from openai_server.deploy.accelerators import Choice, choose
from openai_server.deploy.commands import IMAGE_VLLM
from openai_server.profile import Profile

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "examples" / "deploy" / "skyserve"
GOLDEN_PROFILES = ("phi3-t4", "h100-tp2")
SKY_PYTHON = Path(sys.executable).parents[1] / "skypilot" / "bin" / "python"
CHECK = ROOT / "tests" / "helpers" / "skypilot_check.py"


def skypilot_all(paths: list[Path], *secrets: str) -> list[dict[str, Any]]:
    """What SkyPilot 0.14's own loader makes of each file (it raises on a schema error), in one
    SkyPilot process (its import takes seconds)."""
    assert SKY_PYTHON.is_file(), f"{SKY_PYTHON}: missing; run `make install`"
    out = subprocess.run([str(SKY_PYTHON), str(CHECK), *map(str, paths), *secrets],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    seen = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(seen) == len(paths), out.stdout[-3000:]
    return seen


def skypilot(path: Path, *secrets: str) -> dict[str, Any]:
    return skypilot_all([path], *secrets)[0]


def chosen(profile: Profile, gpu: str | None = None) -> Choice:
    return choose(profile, list(skyserve.ACCELERATORS), target="skyserve", gpu_spec=gpu,
                  vllm_version=IMAGE_VLLM)  # fmt: skip


def write(profile: Profile, tmp_path: Path, **options: Any) -> Path:
    path = tmp_path / "service.yaml"
    path.write_text(skyserve.render(profile, chosen(profile), **options)["service.yaml"])
    return path


@pytest.fixture(scope="module")
def builtin_seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every built-in profile's service file, as SkyPilot loaded it (one SkyPilot process)."""
    names = loader.builtin_names()
    paths = [write(loader.load(n, environ={}).profile, tmp_path_factory.mktemp(n)) for n in names]
    return dict(zip(names, skypilot_all(paths), strict=True))


@pytest.mark.parametrize("name", loader.builtin_names())
def test_every_builtin_profile_is_a_valid_skypilot_service(
    name: str, builtin_seen: dict[str, dict[str, Any]]
) -> None:
    profile = loader.load(name, environ={}).profile
    seen = builtin_seen[name]
    gpus = budgets.gpus_needed(profile)
    for resources in seen["resources"]:
        assert resources["ports"] == [str(profile.effective_port)]
        assert resources["image_id"] == {"null": f"docker:{skyserve.DEFAULT_IMAGE}"}
        if gpus:
            assert list(resources["accelerators"].values()) == [gpus]
        else:
            assert resources["accelerators"] is None and resources["cpus"] == "8+"
    assert seen["readiness_path"] == "/v1/models"
    assert seen["initial_delay_seconds"] >= 1800  # the launcher's ready timeout
    assert seen["readiness_headers"] is None  # no key: /v1/models is open
    assert seen["min_replicas"] == 1
    again = loader.load_text(seen["envs"]["PROFILE_YAML"], "profile.yaml").profile
    assert again.model_dump(exclude={"extends"}) == profile.model_dump(exclude={"extends"})
    assert seen["envs"]["SERVE_HOST"] == "0.0.0.0"


def test_api_key_reaches_the_readiness_probe_as_a_secret(tmp_path: Path) -> None:
    profile = loader.load("l4", sets=["api_key_env=MY_KEY"], environ={}).profile
    path = write(profile, tmp_path)
    assert "s3cret" not in path.read_text()
    seen = skypilot(path, "MY_KEY=s3cret")
    # vLLM guards /v1/* with --api-key: without the header the probe would see 401 for ever
    assert seen["readiness_headers"] == {"Authorization": "Bearer s3cret"}
    assert yaml.safe_load(path.read_text())["secrets"]["MY_KEY"] is None  # required at `up`


def test_accelerators_are_every_gpu_the_profile_fits_or_the_one_named(tmp_path: Path) -> None:
    profile = loader.load("h100-tp2", environ={}).profile
    kinds = [r["accelerators"] for r in skypilot(write(profile, tmp_path))["resources"]]
    # 70B in bf16 over two GPUs: only the 80 GB and larger cards hold it
    assert sorted(k for a in kinds for k in a) == ["A100-80GB", "H100", "H200"]
    pinned = skyserve.render(profile, chosen(profile, "H100:2"))["service.yaml"]
    assert yaml.safe_load(pinned)["resources"]["accelerators"] == {"H100": 2}


def test_autoscaling_and_the_custom_server(tmp_path: Path) -> None:
    profile = loader.load_text("model: microsoft/Phi-3-mini-4k-instruct\nserver: custom\n").profile
    seen = skypilot(write(profile, tmp_path, min_replicas=1, max_replicas=4, target_qps=2.5))
    assert (seen["min_replicas"], seen["max_replicas"], seen["target_qps_per_replica"]) == (
        1, 4, 2.5)  # fmt: skip
    assert seen["resources"][0]["ports"] == ["7860"]


def test_cli_refuses_a_gpu_the_profile_does_not_fit(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["deploy", "--target", "skyserve", "-p", "h100-tp2",
                                    "--gpu", "L4:2", "-o", str(tmp_path / "o")])  # fmt: skip
    assert done.exit_code == 4, done.output
    assert len(done.output.strip().splitlines()) == 1 and "L4:2" in done.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", GOLDEN_PROFILES)
def test_golden_files_match_the_renderer(name: str) -> None:
    profile = loader.load(name, environ={}).profile
    for file, text in skyserve.render(profile, chosen(profile)).items():
        golden = GOLDEN / name / file
        assert golden.read_text() == text, (
            f"{golden} drifted: regenerate with "
            f"`serve deploy --target skyserve -p {name} -o {golden.parent}`"
        )
