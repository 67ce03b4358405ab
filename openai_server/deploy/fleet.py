"""`serve deploy --fleet FLEET.yaml`: one container running `serve fleet` with the fleet's GPUs, as
a compose service or a Kubernetes Deployment. Pure: the resolved fleet in, files out.

- The container gets the fleet file rewritten for it (`fleet.yaml`: listening on every interface;
  each model's profile validated and self-contained beside it as `model-I.yaml`, the `set`
  overrides already applied), mounted read-only (compose: a folder; Kubernetes: a ConfigMap,
  whose keys cannot hold a model name's `/`, hence the indices).
- Probes: `serve probe` on its fast path against the fleet's endpoint for the model the fleet
  loads first (pinned, else preloaded): the fleet lists every model with its state, and a model
  listed as starting or failed is not ready (probe.judge). Kubernetes' liveness is the fleet's
  /health, open without the key.
- Budgets from the slowest model: the start budget is each launcher's own (they start side by
  side); the stop grace is the fleet's drain plus the longest of its models' stops (its launchers
  are stopped side by side).
"""

from __future__ import annotations

from typing import Any

from ..fleet.placement import gpus_of
from ..fleet.spec import DRAIN_S, Fleet, Member
from ..launch.options import Timing
from ..profile import Profile
from . import yamlout
from .budgets import SHM_ONE_GPU, SHM_TENSOR_PARALLEL, gpus_needed, start_budget_s, stop_grace_s
from .compose import CACHE_VOLUMES, OPTIONAL_SECRETS, cache_volumes, probe_argv
from .k8s import CACHE_SIZE, _gi, cache_mounts, labels, probes, security_context

FLEET_DIR = "/etc/serve/fleet"
FLEET_FILE = "fleet.yaml"
COMPOSE_DIR = "fleet"  # beside compose.yaml, mounted at FLEET_DIR
# keys the fleet sets itself for each engine: written out, they would only mislead
FLEET_SETS = {"extends", "served_model_name", "host", "port"}
HEADER = "# rendered by `serve deploy --fleet` from a validated fleet; edit the source files\n"


def model_file(i: int) -> str:
    return f"model-{i}.yaml"


def fleet_files(fleet: Fleet) -> dict[str, str]:
    """The fleet file as the container reads it, and each model's profile beside it."""
    files: dict[str, str] = {}
    models: dict[str, Any] = {}
    for i, m in enumerate(fleet.members):
        data = m.resolved.profile.model_dump(mode="json", exclude_defaults=True,
                                             exclude=FLEET_SETS)  # fmt: skip
        files[model_file(i)] = HEADER + yamlout.dump(data)
        entry: dict[str, Any] = {"profile": f"./{model_file(i)}"}
        entry |= {"preload": False} if not m.preload else {}
        entry |= {"ttl": m.ttl} if m.ttl is not None else {}
        entry |= {"pin": True} if m.pin else {}
        entry |= {"sleep": m.sleep} if m.sleep is not None else {}
        models[m.name] = entry
    top: dict[str, Any] = {"port": fleet.port, "host": "0.0.0.0"}
    top |= {"api_key_env": fleet.api_key_env} if fleet.api_key_env else {}
    top |= {"queue_timeout": fleet.queue_timeout, "min_residency": fleet.min_residency,
            "swap_timeout": fleet.swap_timeout}  # fmt: skip
    top |= {"max_resident": fleet.max_resident} if fleet.max_resident else {}
    files[FLEET_FILE] = HEADER + yamlout.dump({**top, "models": models})
    return files


def first_loaded(fleet: Fleet) -> Member:
    """The model the probes follow: the first pinned one, else the first preloaded, else the
    first (a fleet that loads nothing at its start is ready once its router answers)."""
    for wanted in (lambda m: m.pin, lambda m: m.preload, lambda m: True):
        for m in fleet.members:
            if wanted(m):
                return m
    raise AssertionError("a fleet has at least one model")


def probe_command(fleet: Fleet) -> list[str]:
    return probe_argv(fleet.port, first_loaded(fleet).name, fleet.api_key_env)


def gpus(fleet: Fleet) -> int:
    """GPUs of the container: up to the highest index any model's engine uses (its
    CUDA_VISIBLE_DEVICES or the first ones); 0 when every model is the built-in CPU one."""
    used = [max(gpus_of(m, 64)) + 1 for m in fleet.members if gpus_needed(_p(m))]
    return max(used, default=0)


def stop_grace(fleet: Fleet, timing: Timing) -> int:
    return int(DRAIN_S) + max(stop_grace_s(_p(m), timing) for m in fleet.members)


def shm(fleet: Fleet) -> str:
    return SHM_TENSOR_PARALLEL if gpus(fleet) > 1 else SHM_ONE_GPU


def secrets(fleet: Fleet) -> list[str]:
    """The variables the container needs: the fleet's key, each model's engine key."""
    names = [fleet.api_key_env] + [_p(m).api_key_env for m in fleet.members]
    return list(dict.fromkeys(n for n in names if n))


def _p(m: Member) -> Profile:
    return m.resolved.profile


def compose_files(fleet: Fleet, *, image: str, timing: Timing | None = None) -> dict[str, str]:
    timing = timing or Timing()
    env = {name: f"${{{name}:?set {name} in the environment or an env file}}"
           for name in secrets(fleet)}  # fmt: skip
    env |= {name: f"${{{name}:-}}" for name in OPTIONAL_SECRETS if name not in env}
    service: dict[str, Any] = {
        "image": image,
        "entrypoint": ["serve", "fleet", "--file", f"{FLEET_DIR}/{FLEET_FILE}"],
        "environment": env,
        "ports": [f"{fleet.port}:{fleet.port}"],
        "volumes": [
            f"./{COMPOSE_DIR}:{FLEET_DIR}:ro",
            *cache_volumes(),
        ],
        "shm_size": shm(fleet),
        "healthcheck": {
            "test": ["CMD", *probe_command(fleet)],
            "interval": "15s",
            "timeout": "5s",
            "retries": 3,
            "start_period": f"{start_budget_s(timing)}s",
        },
        "stop_grace_period": f"{stop_grace(fleet, timing)}s",
        # the fleet keeps one model's failure from the others; the container restarts only if
        # the fleet itself ends
        "restart": "unless-stopped",
    }
    if count := gpus(fleet):
        device = {"driver": "nvidia", "count": count, "capabilities": ["gpu"]}
        service["deploy"] = {"resources": {"reservations": {"devices": [device]}}}
    compose = {"services": {"fleet": service}, "volumes": {v: {} for v in CACHE_VOLUMES}}
    out = {"compose.yaml": yamlout.dump(compose)}
    out |= {f"{COMPOSE_DIR}/{name}": text for name, text in fleet_files(fleet).items()}
    return out


def k8s_objects(
    fleet: Fleet, *, name: str = "serve-fleet", image: str, existing_claim: str | None = None,
    runtime_class: str | None = None, node_selector: dict[str, str] | None = None,
    timing: Timing | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    timing = timing or Timing()
    claim = existing_claim or f"{name}-cache"
    secret = f"{name}-secrets"
    env: list[dict[str, Any]] = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": var}}}
        for var in secrets(fleet)
    ]
    env += [{"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": var,
                                                          "optional": True}}}
            for var in OPTIONAL_SECRETS if var not in secrets(fleet)]  # fmt: skip
    container: dict[str, Any] = {
        "name": "fleet",
        "image": image,
        "command": ["serve", "fleet", "--file", f"{FLEET_DIR}/{FLEET_FILE}"],
        "env": env,
        "ports": [{"name": "http", "containerPort": fleet.port}],
        "volumeMounts": [
            {"name": "fleet", "mountPath": FLEET_DIR, "readOnly": True},
            *cache_mounts(),
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        **probes(probe_command(fleet), start_budget_s(timing)),
        "securityContext": security_context(fleet.port),
    }
    if count := gpus(fleet):
        container["resources"] = {"limits": {"nvidia.com/gpu": count}}
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": stop_grace(fleet, timing),
        "containers": [container],
        "volumes": [
            {"name": "fleet", "configMap": {"name": f"{name}-files"}},
            {"name": "cache", "persistentVolumeClaim": {"claimName": claim}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _gi(shm(fleet))}},
        ],
    }
    if runtime_class:
        pod["runtimeClassName"] = runtime_class
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    meta = {"labels": labels(name)}
    out: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": f"{name}-files", **meta},
                                  "data": fleet_files(fleet)}]  # fmt: skip
    if existing_claim is None:
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, **meta},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": CACHE_SIZE}}}})  # fmt: skip
    out.append({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, **meta},
        # one set of GPUs and one RWO cache: the old pod must go before the new one starts
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": labels(name)},
                 "template": {"metadata": {"labels": labels(name)}, "spec": pod}},
    })  # fmt: skip
    out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, **meta},
                "spec": {"selector": labels(name),
                         "ports": [{"name": "http", "port": fleet.port,
                                    "targetPort": "http"}]}})  # fmt: skip
    return out
