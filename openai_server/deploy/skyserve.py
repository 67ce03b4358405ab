"""A SkyPilot service (SkyServe) for one profile: one YAML file. Pure: data in, text out.

Each replica runs serve's image (`image_id: docker:...`) and its entrypoint, `serve launch`, so
phases, the one-line diagnosis and the exit code reach `sky serve logs`. The profile travels as
text in PROFILE_YAML (entrypoint.sh writes it to a file), which keeps the service one
self-contained file.

- accelerators: every GPU SkyPilot knows that the profile fits at its GPU count (the preflight of
  `serve check --gpu`), as a set: SkyPilot picks the cheapest one it can get; `--gpu` pins one.
- readiness_probe: GET /v1/models, which vLLM answers only once the engine is up; with an API key
  the probe sends `Authorization: Bearer $KEY`, the key coming from `sky serve up --secret KEY`
  (SkyPilot substitutes secrets into the service section). `initial_delay_seconds` is the
  launcher's own ready timeout: a cold start is minutes of download and compilation.
- replica_policy: fixed replicas, or autoscaling between --min-replicas and --max-replicas on
  --target-qps requests per second per replica.
"""

from __future__ import annotations

from typing import Any

from ..launch.options import Timing
from ..profile import Profile
from . import yamlout
from .accelerators import Choice
from .budgets import start_budget_s
from .compose import DEFAULT_IMAGE, OPTIONAL_SECRETS, profile_yaml
from .hf_endpoint import endpoint_name

# `--gpu` catalog names -> SkyPilot's accelerator names, smallest memory first.
ACCELERATORS = {"T4": "T4", "V100": "V100", "L4": "L4", "A10G": "A10G", "A100-40": "A100",
                "L40S": "L40S", "A100-80": "A100-80GB", "H100": "H100", "H200": "H200"}  # fmt: skip
CPU_RESOURCES = {"cpus": "8+", "memory": "32+"}  # vLLM's CPU build with the built-in model
PROBE_TIMEOUT_S = 15


def service_spec(
    profile: Profile,
    choice: Choice,
    *,
    image: str = DEFAULT_IMAGE,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    target_qps: float | None = None,
    timing: Timing | None = None,
) -> dict[str, Any]:
    timing = timing or Timing()
    resources: dict[str, Any] = {"ports": profile.effective_port,
                                 "image_id": f"docker:{image}"}  # fmt: skip
    if choice.gpu:
        kinds = [choice.gpu, *choice.also]
        resources["accelerators"] = {ACCELERATORS[k]: choice.count for k in kinds}
    else:
        resources.update(CPU_RESOURCES)
    probe: dict[str, Any] = {
        "path": "/v1/models",
        "initial_delay_seconds": start_budget_s(timing),
        "timeout_seconds": PROBE_TIMEOUT_S,
    }
    secrets: dict[str, str | None] = {}
    if key := profile.api_key_env:
        probe["headers"] = {"Authorization": f"Bearer ${key}"}
        secrets[key] = None  # required: `sky serve up --secret KEY` (a null secret has no value)
    for name in OPTIONAL_SECRETS:
        secrets[name] = ""  # optional: `--secret HF_TOKEN` sets it, else it is empty
    policy: dict[str, Any] = {"min_replicas": min_replicas}
    if max_replicas is not None and max_replicas > min_replicas:
        policy["max_replicas"] = max_replicas
        policy["target_qps_per_replica"] = target_qps or 1.0
    return {
        "name": endpoint_name(profile),
        "service": {"readiness_probe": probe, "replica_policy": policy},
        "resources": resources,
        "envs": {"SERVE_HOST": "0.0.0.0", "PROFILE_YAML": profile_yaml(profile)},
        "secrets": secrets,
        # the image's entrypoint, as `docker run` would start it (SkyPilot runs `run` instead)
        "run": "exec /usr/local/bin/entrypoint.sh",
    }


def render(profile: Profile, choice: Choice, **options: Any) -> dict[str, str]:
    """File name -> text, for `serve deploy --target skyserve` (options: see `service_spec`)."""
    header = (
        "# Rendered by `serve deploy --target skyserve`: sky serve up service.yaml"
        + "".join(f" --secret {k}" for k in ([profile.api_key_env] if profile.api_key_env else []))
        + "\n"
    )
    spec = service_spec(profile, choice, **options)
    return {"service.yaml": header + yamlout.dump(spec)}
