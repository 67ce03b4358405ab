"""A docker compose file for one profile: one service on serve's image. Pure: data in, data out.

The service runs the image's entrypoint (`serve launch --profile $PROFILE`), so phases, the
one-line diagnosed failure and the exit codes reach `docker compose logs`. The validated profile
is written next to the compose file and mounted read-only; secrets are passed through from the
deployer's environment by name (`${VAR}`), never written into either file.
"""

from __future__ import annotations

from typing import Any

from ..cache.bundle import is_url
from ..launch.options import Timing
from ..profile import Profile
from . import yamlout
from .budgets import gpus_needed, shm_size, start_budget_s, stop_grace_s

# `docker build -t serve:0.1.0 .` in this repository; a tag, not `latest`, so that a restart on
# another node runs the same image (a test keeps it equal to the version in pyproject.toml)
DEFAULT_IMAGE = "serve:0.1.0"
PROFILE_FILE = "profile.yaml"
PROFILE_IN_CONTAINER = "/etc/serve/profile.yaml"
# The image sets HF_HOME here; weights survive a restart only on a volume (vLLM 15862).
HF_CACHE = "/root/.cache/huggingface"
# vLLM's torch.compile and kernel caches (VLLM_CACHE_ROOT's default): a warm start was 3.3x faster
# than a cold one on an H100 (docs/vllm-facts.md).
VLLM_CACHE = "/root/.cache/vllm"
# Triton's, Inductor's, CUDA's and FlashInfer's kernel caches: the image points them here
# (Dockerfile), so one more volume keeps what a start built. On an H200 the kernels, not vLLM's
# graphs, were most of a cold start (docs/cache.md).
KERNEL_CACHE = "/root/.cache/kernels"
# Volume -> where it is mounted, for a profile's and a fleet's container alike.
CACHE_VOLUMES = {"huggingface": HF_CACHE, "vllm-cache": VLLM_CACHE, "kernel-cache": KERNEL_CACHE}
# `serve deploy --cache-bundle FILE` copies the bundle beside the files; the container reads it
# here, and the image's entrypoint unpacks what SERVE_CACHE_BUNDLE names before the launch.
BUNDLE_FILE = "cache-bundle.tar.gz"
BUNDLE_IN_CONTAINER = "/etc/serve/cache-bundle.tar.gz"
BUNDLE_VAR = "SERVE_CACHE_BUNDLE"
# Optional in the server's environment: gated models need it, the rest do not.
OPTIONAL_SECRETS = ("HF_TOKEN",)


def profile_yaml(profile: Profile) -> str:
    """The validated profile as a self-contained file (its `extends` resolved, defaults omitted)."""
    data = profile.model_dump(mode="json", exclude_defaults=True, exclude={"extends"})
    header = "# rendered by `serve deploy` from a validated profile; edit the source profile\n"
    return header + yamlout.dump(data)


def probe_command(profile: Profile) -> list[str]:
    """The container's health check: `serve probe` with the endpoint written out, so that it runs
    on its fast path (the standard library, no profile to load: openai_server/probe.py); it asks
    /v1/models for the model id, with the key from the profile's variable when there is one."""
    return probe_argv(profile.effective_port, profile.model_id, profile.api_key_env)


def probe_argv(port: int, model: str, api_key_env: str | None) -> list[str]:
    """`serve probe` on its fast path for the server on this port (a profile's, or a fleet's)."""
    key = ["--api-key-env", api_key_env] if api_key_env else []
    return ["serve", "probe", "--url", f"http://127.0.0.1:{port}", "--model", model, *key]


def bundle_source(bundle: str | None) -> str | None:
    """What the container's SERVE_CACHE_BUNDLE says: the URL, or the mounted copy of a file."""
    if bundle is None:
        return None
    return bundle if is_url(bundle) else BUNDLE_IN_CONTAINER


def cache_volumes() -> list[str]:
    return [f"{volume}:{path}" for volume, path in CACHE_VOLUMES.items()]


def environment(profile: Profile, bundle: str | None = None) -> dict[str, str]:
    env = {"PROFILE": PROFILE_IN_CONTAINER, "SERVE_HOST": "0.0.0.0"}
    if source := bundle_source(bundle):
        env[BUNDLE_VAR] = source
    if profile.api_key_env:
        # required: compose refuses to start without it instead of serving with no key
        key = profile.api_key_env
        env[key] = f"${{{key}:?set {key} in the environment or an env file}}"
    for name in OPTIONAL_SECRETS:
        env.setdefault(name, f"${{{name}:-}}")
    return env


def compose_file(
    profile: Profile,
    *,
    image: str = DEFAULT_IMAGE,
    timing: Timing | None = None,
    bundle: str | None = None,
) -> dict[str, Any]:
    timing = timing or Timing()
    port = profile.effective_port
    mounted = [f"./{BUNDLE_FILE}:{BUNDLE_IN_CONTAINER}:ro"] if bundle and not is_url(bundle) else []
    service: dict[str, Any] = {
        "image": image,
        "environment": environment(profile, bundle),
        "ports": [f"{port}:{port}"],
        "volumes": [f"./{PROFILE_FILE}:{PROFILE_IN_CONTAINER}:ro", *mounted, *cache_volumes()],
        "shm_size": shm_size(profile),
        "healthcheck": {
            "test": ["CMD", *probe_command(profile)],
            "interval": "15s",
            "timeout": "5s",
            "retries": 3,
            "start_period": f"{start_budget_s(timing)}s",
        },
        "stop_grace_period": f"{stop_grace_s(profile, timing)}s",
        # the launcher applies the profile's restart policy inside the container, with its limit
        # and its never-retried failures; a container restart on top would retry those forever
        "restart": "unless-stopped" if profile.restart == "always" else "no",
    }
    if gpus := gpus_needed(profile):
        service["deploy"] = {
            "resources": {
                "reservations": {
                    "devices": [{"driver": "nvidia", "count": gpus, "capabilities": ["gpu"]}]
                }
            }
        }
    return {"services": {"serve": service}, "volumes": {v: {} for v in CACHE_VOLUMES}}


def render(
    profile: Profile, *, image: str = DEFAULT_IMAGE, bundle: str | None = None
) -> dict[str, str]:
    """File name -> text, for `serve deploy --target compose` (a bundle FILE is copied by
    `serve deploy` beside them, as BUNDLE_FILE)."""
    text = yamlout.dump(compose_file(profile, image=image, bundle=bundle))
    return {"compose.yaml": text, PROFILE_FILE: profile_yaml(profile)}
