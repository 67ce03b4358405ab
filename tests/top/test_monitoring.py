"""serve deploy --monitoring: the ServiceMonitor against the Prometheus Operator's schema, the
Grafana dashboard with `serve top`'s panels, written for every target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from openai_server import loader
from openai_server.cli import app
from openai_server.deploy import k8s, monitoring
from openai_server.top.panels import PANELS

# The parts of monitoring.coreos.com/v1 ServiceMonitor that we write, derived by hand from the
# operator's CRD (prometheus-operator 0.93.0, example/prometheus-operator-crd/
# monitoring.coreos.com_servicemonitors.yaml: spec.required, endpoints[].port/path/interval and
# interval's pattern). Unknown keys are refused here, as the API server would prune them.
# (The rendered object was also checked against that CRD's full openAPIV3Schema; see docs/top.md.)
DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string"}, "labels": STRINGS}},
        "spec": {
            "type": "object",
            "required": ["endpoints", "selector"],
            "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "additionalProperties": False,
                             "properties": {"matchLabels": STRINGS}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                   "interval": {"type": "string", "pattern": DURATION}},
                }},
            },
        },
    },
}  # fmt: skip

runner = CliRunner()


def test_service_monitor_matches_the_crd_schema_and_selects_the_rendered_service() -> None:
    smon = monitoring.service_monitor()
    jsonschema.validate(smon, SERVICE_MONITOR_SCHEMA)
    profile = loader.load("tiny-cpu", environ={}).profile
    service = next(o for o in k8s.objects(profile) if o["kind"] == "Service")
    assert smon["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert smon["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_schema_refuses_what_the_operator_would() -> None:
    smon = monitoring.service_monitor()
    smon["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(smon, SERVICE_MONITOR_SCHEMA)


def test_dashboard_has_serve_tops_panels_with_queries_and_no_overlap() -> None:
    board = monitoring.dashboard(loader.load("tiny-cpu", environ={}).profile)
    assert board["title"] == "serve: tiny-phi3"
    assert [p["title"] for p in board["panels"]] == [p.title for p in PANELS]
    places = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in board["panels"]}
    assert len(places) == len(board["panels"])
    for panel in board["panels"]:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        assert panel["datasource"]["uid"] == "${datasource}"
    text = json.dumps(board)
    for figure in ("TTFT", "TPOT", "E2E", "KV", "tok/s", "finished", "GPU util"):
        assert f"serve top: {figure}" in text


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("compose", ["compose.yaml", "grafana-dashboard.json", "profile.yaml"]),
        ("k8s", ["grafana-dashboard.json", "serve.yaml", "servicemonitor.yaml"]),
    ],
)
def test_deploy_monitoring_writes_the_files(
    tmp_path: Path, target: str, expected: list[str]
) -> None:
    result = runner.invoke(app, ["deploy", "-p", "tiny-cpu", "--target", target, "--monitoring",
                                 "-o", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    json.loads((tmp_path / "grafana-dashboard.json").read_text())
    if target == "k8s":
        smon = yaml.safe_load((tmp_path / "servicemonitor.yaml").read_text())
        jsonschema.validate(smon, SERVICE_MONITOR_SCHEMA)
        assert "kubectl apply -f" in result.stdout and "servicemonitor.yaml" in result.stdout
