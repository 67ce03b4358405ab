"""serve deploy --target k8s: every built-in profile, validated by kubernetes-validate (strict,
against the oldest stated Kubernetes release), numbers read back, golden files kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from openai_server import loader
from openai_server.cli import app
from openai_server.deploy import budgets, k8s
from openai_server.launch.options import Timing
from tests.conftest import ecosystem_validator

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "examples" / "deploy" / "k8s"
GOLDEN_PROFILES = ("phi3-t4", "h100-tp2")


def validate(path: Path) -> None:
    ecosystem_validator("kubernetes-validate", "--strict", "-k", k8s.KUBERNETES_VERSION, "--quiet",
                        str(path))  # fmt: skip


def by_kind(text: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(text)}


def container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", loader.builtin_names())
def test_every_builtin_profile_renders_valid_objects(name: str, tmp_path: Path) -> None:
    profile = loader.load(name, environ={}).profile
    text = k8s.render(profile)["serve.yaml"]
    (tmp_path / "serve.yaml").write_text(text)
    validate(tmp_path / "serve.yaml")
    docs = by_kind(text)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    c = container(docs)
    gpus = budgets.gpus_needed(profile)
    assert c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0) == gpus
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800  # >= ready timeout
    assert c["readinessProbe"]["exec"]["command"][:2] == ["serve", "probe"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["terminationGracePeriodSeconds"] == budgets.stop_grace_s(profile, Timing())
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]
    assert shm == {"medium": "Memory", "sizeLimit": "16Gi" if gpus > 1 else "1Gi"}
    assert c["ports"][0]["containerPort"] == profile.effective_port
    again = loader.load_text(docs["ConfigMap"]["data"]["profile.yaml"], "profile.yaml").profile
    assert again.model_dump(exclude={"extends"}) == profile.model_dump(exclude={"extends"})


def test_held_back_shapes_api_key_tensor_parallel_custom_server(tmp_path: Path) -> None:
    text = (
        "model: org/m\napi_key_env: MY_KEY\ntensor_parallel_size: 2\nserver: custom\n"
        "shutdown_timeout: 120\n"
    )
    out = k8s.render(loader.load_text(text).profile, existing_claim="models",
                     runtime_class="nvidia", node_selector={"gpu": "h100"})["serve.yaml"]  # fmt: skip
    (tmp_path / "serve.yaml").write_text(out)
    validate(tmp_path / "serve.yaml")
    docs = by_kind(out)
    assert "PersistentVolumeClaim" not in docs  # an existing claim is used, not created
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia" and pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["terminationGracePeriodSeconds"] == 140  # 120 drain + 10 + 10
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["MY_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "serve-secrets", "key": "MY_KEY"}
    assert container(docs)["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert docs["Service"]["spec"]["ports"][0]["port"] == 7860


@pytest.mark.parametrize("name", GOLDEN_PROFILES)
def test_golden_files_match_the_renderer(name: str) -> None:
    text = k8s.render(loader.load(name, environ={}).profile)["serve.yaml"]
    golden = GOLDEN / name / "serve.yaml"
    assert golden.read_text() == text, (
        f"{golden} drifted: regenerate with `serve deploy --target k8s -p {name} -o {golden.parent}`"
    )


def test_serve_deploy_k8s_writes_one_file(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["deploy", "--target", "k8s", "-p", "phi3-t4", "--gpu", "T4",
                                    "-o", str(tmp_path)])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert [p.name for p in tmp_path.iterdir()] == ["serve.yaml"]
    bad = CliRunner().invoke(app, ["deploy", "--target", "k8s", "-p", "phi3-t4",
                                   "--node-selector", "novalue", "-o", str(tmp_path)])  # fmt: skip
    assert bad.exit_code == 2


def test_a_port_below_1024_keeps_only_the_capability_to_bind_it(tmp_path: Path) -> None:
    profile = loader.load_text("model: org/m\nport: 80\n").profile
    text = k8s.render(profile)["serve.yaml"]
    (tmp_path / "serve.yaml").write_text(text)
    validate(tmp_path / "serve.yaml")
    caps = container(by_kind(text))["securityContext"]["capabilities"]
    assert caps == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    high = k8s.render(loader.load_text("model: org/m\n").profile)["serve.yaml"]
    assert container(by_kind(high))["securityContext"]["capabilities"] == {"drop": ["ALL"]}
