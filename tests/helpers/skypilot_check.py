"""Run by SkyPilot's own interpreter (.venv/skypilot, see the Makefile): parse service YAML files
with SkyPilot's task and service loaders, which validate them against SkyPilot's schema, and print
what SkyPilot understood, as JSON, one object per file.

Usage: python skypilot_check.py FILE... [KEY=SECRET ...]   (secrets as `sky serve up --secret`;
one SkyPilot import for many files: it takes seconds)
"""

import json
import sys

import yaml
from sky import Task

paths = [a for a in sys.argv[1:] if "=" not in a]
secrets = [tuple(a.split("=", 1)) for a in sys.argv[1:] if "=" in a]


def seen(path: str) -> dict[str, object]:
    with open(path) as f:
        config = yaml.safe_load(f)
    task = Task.from_yaml_config(config, secrets_overrides=secrets or None)
    spec = task.service
    assert spec is not None, f"{path}: no service section"
    return {
        "name": task.name,
        "readiness_path": spec.readiness_path,
        "initial_delay_seconds": spec.initial_delay_seconds,
        "readiness_timeout_seconds": spec.readiness_timeout_seconds,
        "readiness_headers": spec.readiness_headers,
        "min_replicas": spec.min_replicas,
        "max_replicas": spec.max_replicas,
        "target_qps_per_replica": spec.target_qps_per_replica,
        "resources": [
            {
                "accelerators": r.accelerators,
                "ports": r.ports,
                "image_id": r.image_id,
                "cpus": r.cpus,
                "memory": r.memory,
            }
            for r in task.resources
        ],
        "envs": task.envs,
        "run": task.run,
    }


for p in paths:
    print(json.dumps(seen(p)))
