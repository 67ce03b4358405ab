"""`serve deploy --monitoring`: a Grafana dashboard with `serve top`'s panels for every target, and
for Kubernetes a Prometheus Operator ServiceMonitor. Pure: built as data, serialised once.

The ServiceMonitor is its own file, not a document of serve.yaml: `kubectl apply` of a kind the
cluster does not know (no Prometheus Operator) fails the whole file. It selects the Service that
k8s.py / k8s_lws.py render (same labels, its port named `http`) and scrapes /metrics, which vLLM's
--api-key leaves open (the key guards /v1 only), so no credentials are needed. Schema:
monitoring.coreos.com/v1 ServiceMonitor (prometheus-operator
example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml).
"""

from __future__ import annotations

import json
from typing import Any

from ..profile import Profile
from ..top.panels import PANELS, Panel
from . import yamlout
from .k8s import labels

SCRAPE_INTERVAL = "15s"  # Prometheus' usual; Grafana's $__rate_interval is four of them
DASHBOARD = "grafana-dashboard.json"
SERVICE_MONITOR = "servicemonitor.yaml"
GRID_W, GRID_H = 12, 8  # two panels a row on Grafana's 24-column grid


def service_monitor(name: str = "serve") -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "selector": {"matchLabels": labels(name)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": SCRAPE_INTERVAL}],
        },
    }


def _panel(i: int, panel: Panel) -> dict[str, Any]:
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": f"serve top: {panel.shown_as}",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": (i % 2) * GRID_W, "y": (i // 2) * GRID_H, "w": GRID_W, "h": GRID_H},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend}
            for j, (legend, expr) in enumerate(panel.queries)
        ],
    }


def dashboard(profile: Profile) -> dict[str, Any]:
    """A Grafana dashboard (schemaVersion 39, Grafana 10+) on a Prometheus data source chosen at
    import (the `datasource` variable)."""
    return {
        "title": f"serve: {profile.model_id}",
        "uid": None,
        "tags": ["vllm", "serve"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                }
            ]
        },
        "panels": [_panel(i, p) for i, p in enumerate(PANELS)],
    }


def files(profile: Profile, target: str) -> dict[str, str]:
    """File name -> text added to a target's files by --monitoring."""
    out = {DASHBOARD: json.dumps(dashboard(profile), indent=2) + "\n"}
    if target in ("k8s", "k8s-lws"):
        out[SERVICE_MONITOR] = yamlout.dump(service_monitor())
    return out
