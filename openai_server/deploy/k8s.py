"""Kubernetes objects for one profile: ConfigMap (the profile), PVC (the caches), Deployment,
Service. Pure: built as data, serialised once; validated in the tests by kubernetes-validate.

Probes, and why each is what it is:
- startupProbe: exec `serve probe --url ... --model ...` (its fast path: the standard library, 0.1 s
  of CPU; compose.probe_command) every 10 s, for as long as the launcher itself waits
  (budgets.start_budget_s, 30 min): a cold start is minutes of silent compilation and loading
  (AIBrix 772 had a 150 s budget kill healthy starts; KServe 5062 moved to a startupProbe).
- readinessProbe: exec `serve probe`, which asks /v1/models for the profile's model id with the
  API key when one is set. vLLM guards /v1/* with --api-key, so an httpGet on /v1/models would
  answer 401 for ever once a key is set; /health says nothing of which model is served. Without a
  key an httpGet would do, but it passes on any model list; the exec's fast path costs about a
  hundredth of a core at one probe per 10 s, so every profile gets the same probe.
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
    KERNEL_CACHE,
    OPTIONAL_SECRETS,
    PROFILE_IN_CONTAINER,
    VLLM_CACHE,
    probe_command,
    profile_yaml,
)

KUBERNETES_VERSION = "1.30.0"  # the oldest release the rendered objects are validated against
PERIOD_S = 10
CACHE_SIZE = "200Gi"  # room for the weights of a 70B model in bf16 (140 GB) and the compile cache
PROFILE_DIR = "/etc/serve"

# The builders below are shared with k8s_lws.py (a LeaderWorkerSet's pods are these containers).


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "serve", "app.kubernetes.io/instance": name}


def env(profile: Profile, name: str) -> list[dict[str, Any]]:
    """The container's environment: the profile's path, every interface, the secrets by name."""
    out: list[dict[str, Any]] = [
        {"name": "PROFILE", "value": PROFILE_IN_CONTAINER},
        {"name": "SERVE_HOST", "value": "0.0.0.0"},
    ]
    secret = f"{name}-secrets"
    if profile.api_key_env:
        ref: dict[str, Any] = {"name": secret, "key": profile.api_key_env}
        out.append({"name": profile.api_key_env, "valueFrom": {"secretKeyRef": ref}})
    for var in OPTIONAL_SECRETS:
        ref = {"name": secret, "key": var, "optional": True}
        out.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    return out


def cache_mounts() -> list[dict[str, Any]]:
    """The cache volume's folders, where the image's caches live (compose.CACHE_VOLUMES)."""
    return [
        {"name": "cache", "mountPath": HF_CACHE, "subPath": "huggingface"},
        {"name": "cache", "mountPath": VLLM_CACHE, "subPath": "vllm"},
        {"name": "cache", "mountPath": KERNEL_CACHE, "subPath": "kernels"},
    ]


def bundle_init(image: str, url: str) -> dict[str, Any]:
    """The init container that restores a cache bundle into the cache volume before the server
    starts. --best-effort: a bundle this pod cannot use (another vLLM or GPU, a failed download)
    is one line in its log and the server compiles as without one, within the same startupProbe
    budget, which counts from the server's own start."""
    return {
        "name": "cache-bundle",
        "image": image,
        "command": ["serve", "cache", "unpack", url, "--best-effort"],
        "volumeMounts": cache_mounts(),
        "securityContext": security_context(None),  # it binds no port
    }


def probes(command: list[str], start_budget: int) -> dict[str, Any]:
    """startupProbe, readinessProbe, livenessProbe of the container that serves (module
    docstring): `command` is its `serve probe`; the start probe waits `start_budget` seconds."""
    return {
        # copies: the same list twice would be written as a YAML anchor and alias
        "startupProbe": {
            "exec": {"command": list(command)},
            "periodSeconds": PERIOD_S,
            "timeoutSeconds": 5,
            "failureThreshold": -(-start_budget // PERIOD_S),
        },
        "readinessProbe": {
            "exec": {"command": list(command)},
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
    }


def container(
    profile: Profile,
    *,
    name: str,
    image: str,
    command: list[str] | None = None,
    extra_env: list[dict[str, Any]] | None = None,
    serving: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """serve's container: the image, the profile and caches mounted, /dev/shm, the GPUs of one
    host. `serving`: the probes (`probes`), given to the container that answers HTTP, which then
    declares its port too; `command` replaces the image's entrypoint."""
    port = profile.effective_port
    out: dict[str, Any] = {"name": "serve", "image": image}
    if command:
        out["command"] = command
    out["env"] = env(profile, name) + (extra_env or [])
    if serving is not None:
        out["ports"] = [{"name": "http", "containerPort": port}]
    out["volumeMounts"] = [
        {"name": "profile", "mountPath": PROFILE_DIR, "readOnly": True},
        *cache_mounts(),
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    out.update(serving or {})
    out["securityContext"] = security_context(port)
    if gpus := gpus_needed(profile):
        out["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    return out


def volumes(profile: Profile, name: str, claim: str | None) -> list[dict[str, Any]]:
    """The profile (ConfigMap), the caches (the PVC `claim`; None: the pod gets its cache
    elsewhere, from a volume claim template) and /dev/shm."""
    out: list[dict[str, Any]] = [{"name": "profile", "configMap": {"name": f"{name}-profile"}}]
    if claim is not None:
        out.append({"name": "cache", "persistentVolumeClaim": {"claimName": claim}})
    # NCCL and vLLM's engine queues need more than the 64 MiB a container gets by default
    out.append(
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _gi(shm_size(profile))}}
    )
    return out


def pod_spec(
    profile: Profile,
    containers: list[dict[str, Any]],
    pod_volumes: list[dict[str, Any]],
    *,
    timing: Timing,
    runtime_class: str | None = None,
    node_selector: dict[str, str] | None = None,
    init: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": stop_grace_s(profile, timing)}
    if init:
        pod["initContainers"] = init
    pod |= {"containers": containers, "volumes": pod_volumes}
    if runtime_class:
        pod["runtimeClassName"] = runtime_class
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    return pod


def config_map(profile: Profile, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-profile", "labels": labels(name)},
        "data": {"profile.yaml": profile_yaml(profile)},
    }


def service(profile: Profile, name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": profile.effective_port, "targetPort": "http"}],
        },
    }


def objects(
    profile: Profile,
    *,
    name: str = "serve",
    image: str = DEFAULT_IMAGE,
    existing_claim: str | None = None,
    runtime_class: str | None = None,
    node_selector: dict[str, str] | None = None,
    timing: Timing | None = None,
    bundle_url: str | None = None,
) -> list[dict[str, Any]]:
    timing = timing or Timing()
    claim = existing_claim or f"{name}-cache"
    init = [bundle_init(image, bundle_url)] if bundle_url else None
    serving = container(
        profile,
        name=name,
        image=image,
        serving=probes(probe_command(profile), start_budget_s(timing)),
    )
    pod = pod_spec(profile, [serving], volumes(profile, name, claim), timing=timing,
                   runtime_class=runtime_class, node_selector=node_selector,
                   init=init)  # fmt: skip
    out: list[dict[str, Any]] = [config_map(profile, name)]
    if existing_claim is None:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "labels": labels(name)},
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
            "metadata": {"name": name, "labels": labels(name)},
            "spec": {
                "replicas": 1,
                # one GPU set and one RWO cache: the old pod must go before the new one starts
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels(name)},
                "template": {"metadata": {"labels": labels(name)}, "spec": pod},
            },
        },
        service(profile, name, labels(name)),
    ]
    return out


def security_context(port: int | None) -> dict[str, Any]:
    """vLLM's image runs as root and writes its caches under /root/.cache: the most this image
    runs under is no privilege escalation, no capabilities and the runtime's seccomp profile."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], **(_bind_low_port(port) if port else {})},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


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
