"""serve deploy --fleet: one container running `serve fleet`, as a compose service (check-jsonschema)
and as Kubernetes objects (kubernetes-validate, strict); the fleet file written for the container
loads back as the same fleet; what cannot run is refused in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from openai_server.cli import app
from openai_server.deploy import fleet as fleet_deploy
from openai_server.deploy import k8s
from openai_server.fleet.spec import load_fleet
from openai_server.launch.options import Timing
from openai_server.probe import judge
from tests.conftest import ecosystem_validator

FLEET = """\
port: 9000
api_key_env: FLEET_KEY
max_resident: 1
models:
  chat: {profile: h100, pin: true, set: {gpu_memory_utilization: 0.5}}
  small: {profile: phi3-t4, set: {max_num_seqs: 32, gpu_memory_utilization: 0.4}, ttl: 600,
          preload: false}
  two: {profile: h100-tp2, set: {env.CUDA_VISIBLE_DEVICES: '2,3'}, preload: false}
"""


def deploy(tmp: Path, *args: str, text: str = FLEET) -> Any:
    (tmp / "fleet.yaml").write_text(text)
    return CliRunner().invoke(app, ["deploy", "--fleet", str(tmp / "fleet.yaml"), *args])


def test_compose_runs_the_fleet_with_its_gpus_probe_and_files(tmp_path: Path) -> None:
    out = tmp_path / "c"
    done = deploy(tmp_path, "--target", "compose", "-o", str(out))
    assert done.exit_code == 0, done.output
    ecosystem_validator("check-jsonschema", "--builtin-schema", "vendor.compose-spec",
                        str(out / "compose.yaml"))  # fmt: skip
    service = yaml.safe_load((out / "compose.yaml").read_text())["services"]["fleet"]
    assert service["entrypoint"] == ["serve", "fleet", "--file", "/etc/serve/fleet/fleet.yaml"]
    assert service["volumes"][0] == "./fleet:/etc/serve/fleet:ro"
    assert service["healthcheck"]["test"][1:] == ["serve", "probe", "--url",
                                                  "http://127.0.0.1:9000", "--model", "chat",
                                                  "--api-key-env", "FLEET_KEY"]  # fmt: skip
    # GPUs 0..3: `two` runs on 2 and 3; the drain and the slowest model's stop, side by side
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 4
    assert service["shm_size"] == "16gb"
    assert "FLEET_KEY:?" in service["environment"]["FLEET_KEY"]
    # the container's fleet file loads back as the same fleet, every model's profile with it
    back = load_fleet(out / "fleet" / "fleet.yaml")
    source = load_fleet(tmp_path / "fleet.yaml")
    assert [m.name for m in back.members] == ["chat", "small", "two"]
    for a, b in zip(back.members, source.members, strict=True):
        assert (a.pin, a.preload, a.ttl, a.sleep) == (b.pin, b.preload, b.ttl, b.sleep)
        pa, pb = a.resolved.profile, b.resolved.profile
        assert pa.model_dump(exclude={"port"}) == pb.model_dump(exclude={"port"}), a.name
    assert (back.host, back.max_resident, back.api_key_env) == ("0.0.0.0", 1, "FLEET_KEY")


def test_k8s_objects_are_valid_and_carry_the_fleet(tmp_path: Path) -> None:
    out = tmp_path / "k"
    done = deploy(tmp_path, "--target", "k8s", "-o", str(out), "--runtime-class", "nvidia")
    assert done.exit_code == 0, done.output
    ecosystem_validator("kubernetes-validate", "--strict", "-k", k8s.KUBERNETES_VERSION, "--quiet",
                        str(out / "serve.yaml"))  # fmt: skip
    docs = {d["kind"]: d for d in yaml.safe_load_all((out / "serve.yaml").read_text())}
    assert set(docs["ConfigMap"]["data"]) == {"fleet.yaml", "model-0.yaml", "model-1.yaml",
                                              "model-2.yaml"}  # fmt: skip
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (box,) = pod["containers"]
    assert box["command"][:2] == ["serve", "fleet"]
    assert box["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert box["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "--model" in box["readinessProbe"]["exec"]["command"]
    assert pod["terminationGracePeriodSeconds"] == fleet_deploy.stop_grace(
        load_fleet(tmp_path / "fleet.yaml"), Timing()
    )
    assert docs["Service"]["spec"]["ports"][0]["port"] == 9000


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--target", "hf-space"), "deploy --fleet: --target hf-space runs one model"),
        (("--target", "k8s", "-p", "h100"), "drop --profile and --set"),
        # pinned together: over one GPU
        (("--target", "k8s", "--gpu", "H100:4"), None),
    ],
)
def test_what_cannot_run_is_refused_in_one_line(
    tmp_path: Path, args: tuple[str, ...], says: str | None
) -> None:
    done = deploy(tmp_path, *args, "-o", str(tmp_path / "x"))
    if says is None:
        assert done.exit_code == 0, done.output
        return
    assert done.exit_code == 4 and says in done.output, done.output
    assert not (tmp_path / "x").exists()


def test_a_model_that_cannot_run_on_the_gpu_is_refused_naming_it(tmp_path: Path) -> None:
    text = "models:\n  chat: {profile: phi3-t4}\n  big: {profile: h100}\n"
    done = deploy(tmp_path, "--target", "compose", "--gpu", "T4", "-o", str(tmp_path / "x"),
                  text=text)  # fmt: skip
    assert done.exit_code == 4, done.output
    assert "models.big:" in done.output and not (tmp_path / "x").exists()
    pinned = "models:\n  a: {profile: h100, pin: true}\n  b: {profile: h100, pin: true}\n"
    done = deploy(tmp_path, "--target", "k8s", "--gpu", "H100", "-o", str(tmp_path / "y"),
                  text=pinned)  # fmt: skip
    assert done.exit_code == 4 and "must be loaded together (a 0.90 + b 0.90" in done.output


def test_the_probe_sees_a_fleets_model_starting_as_not_ready() -> None:
    listed = b'{"data": [{"id": "chat", "state": "starting"}, {"id": "small", "state": "asleep"}]}'
    assert not judge("u", 200, listed, "chat").ready
    assert "is listed, starting (a fleet)" in judge("u", 200, listed, "chat").reason
    assert judge("u", 200, listed, "small").ready  # asleep: it wakes at a request
