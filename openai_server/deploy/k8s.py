"""Kubernetes objects for one profile: ConfigMap (the profile), PVC (the caches), Deployment,
Service. Pure: built as data, serialised once; validated in the tests by kubernetes-validate.

Probes, and why each is what it is:
- startupProbe: exec `serve probe` every 10 s, for as long as the launcher itself waits
  (budgets.start_budget_s, 30 min): a cold start is minutes of silent compilation and loading
  (AIBrix 772 had a 150 s budget kill healthy starts; KServe 5062 moved to a startupProbe).
- readinessProbe: exec `serve probe`, which asks /v1/models for the profile's model id with the
  API key when one is set. vLLM guards /v1/* with --api-key, so an httpGet on /v1/models would
  answer 401 for ever once a key is set; /health says nothing of which model is served.
- livenessProbe: httpGet /health, which --api-key leaves open and which answers 503 once the
  engine is dead; the launcher inside watches the engine too and exits with a diagnosed code.
"""

from __future__ import annotations

from typing import Any

from ..launch.options import Timing
from ..profile import Profile
from . import yamlout
from .budgets import gpus_needed, shm_size, start_budget_s, stop_grace_s
from .compose import (
    DEFAULT_IMAGE,
    HF_CACHE,
    OPTIONAL_SECRETS,
    PROFILE_IN_CONTAINER,
    VLLM_CACHE,
    profile_yaml,
)

KUBERNETES_VERSION = "1.30.0"  # the oldest release the rendered objects are validated against
PERIOD_S = 10
CACHE_SIZE = "200Gi"  # room for the weights of a 70B model in bf16 (140 GB) and the compile cache


def _label(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "serve", "app.kubernetes.io/instance": name}


def _probe_exec() -> dict[str, Any]:
    return {"exec": {"command": ["serve", "probe", "--profile", PROFILE_IN_CONTAINER]}}


def _env(profile: Profile, name: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "PROFILE", "value": PROFILE_IN_CONTAINER},
        {"name": "SERVE_HOST", "value": "0.0.0.0"},
    ]
    secret = f"{name}-secrets"
    if profile.api_key_env:
        ref: dict[str, Any] = {"name": secret, "key": profile.api_key_env}
        env.append({"name": profile.api_key_env, "valueFrom": {"secretKeyRef": ref}})
    for var in OPTIONAL_SECRETS:
        ref = {"name": secret, "key": var, "optional": True}
        env.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    return env


def objects(
    profile: Profile,
    *,
    name: str = "serve",
    image: str = DEFAULT_IMAGE,
    existing_claim: str | None = None,
    runtime_class: str | None = None,
    node_selector: dict[str, str] | None = None,
    timing: Timing | None = None,
) -> list[dict[str, Any]]:
    timing = timing or Timing()
    port = profile.effective_port
    gpus = gpus_needed(profile)
    claim = existing_claim or f"{name}-cache"
    container: dict[str, Any] = {
        "name": "serve",
        "image": image,
        "env": _env(profile, name),
        "ports": [{"name": "http", "containerPort": port}],
        "volumeMounts": [
            {"name": "profile", "mountPath": "/etc/serve", "readOnly": True},
            {"name": "cache", "mountPath": HF_CACHE, "subPath": "huggingface"},
            {"name": "cache", "mountPath": VLLM_CACHE, "subPath": "vllm"},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "startupProbe": {
            **_probe_exec(),
            "periodSeconds": PERIOD_S,
            "timeoutSeconds": 5,
            "failureThreshold": -(-start_budget_s(timing) // PERIOD_S),
        },
        "readinessProbe": {
            **_probe_exec(),
            "periodSeconds": PERIOD_S,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": PERIOD_S,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        # vLLM's image runs as root and writes its caches under /root/.cache: the most this image
        # runs under is no privilege escalation, no capabilities and the runtime's seccomp profile
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], **_bind_low_port(port)},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": stop_grace_s(profile, timing),
        "containers": [container],
        "volumes": [
            {"name": "profile", "configMap": {"name": f"{name}-profile"}},
            {"name": "cache", "persistentVolumeClaim": {"claimName": claim}},
            # NCCL and vLLM's engine queues need more than the 64 MiB a container gets by default
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _gi(shm_size(profile))}},
        ],
    }
    if runtime_class:
        pod["runtimeClassName"] = runtime_class
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-profile", "labels": _label(name)},
            "data": {"profile.yaml": profile_yaml(profile)},
        }
    ]
    if existing_claim is None:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "labels": _label(name)},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": CACHE_SIZE}},
                },
            }
        )
    out += [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": _label(name)},
            "spec": {
                "replicas": 1,
                # one GPU set and one RWO cache: the old pod must go before the new one starts
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": _label(name)},
                "template": {"metadata": {"labels": _label(name)}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": _label(name)},
            "spec": {
                "selector": _label(name),
                "ports": [{"name": "http", "port": port, "targetPort": "http"}],
            },
        },
    ]
    return out


def _bind_low_port(port: int) -> dict[str, list[str]]:
    """A port below 1024 needs NET_BIND_SERVICE once every capability is dropped; the one
    capability is added back rather than refusing the port."""
    return {"add": ["NET_BIND_SERVICE"]} if port < 1024 else {}


def _gi(size: str) -> str:
    """budgets' `16gb` -> Kubernetes' `16Gi`."""
    return size.removesuffix("gb") + "Gi"


def render(profile: Profile, **options: Any) -> dict[str, str]:
    """File name -> text, for `serve deploy --target k8s` (options: see `objects`)."""
    return {"serve.yaml": yamlout.dump_all(objects(profile, **options))}
