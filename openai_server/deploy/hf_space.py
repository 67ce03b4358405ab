"""A Hugging Face Docker Space for one profile: README.md (the Space's config in its front matter),
Dockerfile and profile.yaml. Pure: data in, text out.

What a Space is, and what follows from it (Spaces docs, "Docker Spaces" and "Spaces
configuration reference"):
- it builds the Dockerfile of its repository and runs it as UID 1000, so the file gives UID 1000 a
  home and a passwd entry (torch and triton look the user up) and never relies on /root;
- only /data (persistent storage, when attached) survives a restart, so the Hugging Face cache,
  vLLM's compile cache and serve's own cache live there: a warm restart skips the download and
  the compilation;
- it exposes one port, `app_port`, and flags the Space unhealthy when the app is not up within
  `startup_duration_timeout` (30 minutes by default): both come from the profile here;
- secrets (the API key, HF_TOKEN for gated models) are set in the Space's settings, which the
  container sees as environment variables; nothing secret is written into these files.
"""

from __future__ import annotations

from typing import Any

from ..cache.bundle import is_url
from ..errors import RefusedError
from ..launch.options import Timing
from ..profile import BUILTIN_MODEL_PREFIX, Profile
from . import yamlout
from .accelerators import Choice
from .budgets import gpus_needed, start_budget_s
from .compose import (
    BUNDLE_FILE,
    BUNDLE_IN_CONTAINER,
    BUNDLE_VAR,
    DEFAULT_IMAGE,
    PROFILE_FILE,
    PROFILE_IN_CONTAINER,
    bundle_source,
    profile_yaml,
)

# Space hardware for each GPU `--gpu` knows, smallest memory first (huggingface_hub.SpaceHardware;
# the larger flavour of a GPU where the smaller has too little CPU memory to load a model).
HARDWARE = {"T4": "t4-medium", "L4": "l4x1", "A10G": "a10g-large", "L40S": "l40sx1",
            "A100-80": "a100-large"}  # fmt: skip
CPU_HARDWARE = "cpu-upgrade"  # 8 vCPUs, 32 GB: vLLM's CPU build with the built-in model
UID = 1000  # the user every Space runs its container as
DATA = "/data"  # the only directory kept across restarts (persistent storage)
HOME = "/home/user"
# Persistent storage tiers (huggingface_hub.SpaceStorage) and their sizes in GB.
STORAGE_GB = {"small": 20, "medium": 150, "large": 1000}
CACHE_HEADROOM_GB = 10  # vLLM's compile cache, the tokenizer and a second revision's files


def refuse_unrunnable(profile: Profile) -> None:
    """One line when a Space cannot run the profile at all."""
    if (gpus := gpus_needed(profile)) > 1:
        raise RefusedError(
            f"deploy --target hf-space: the profile needs {gpus} GPUs (tensor_parallel_size x "
            "pipeline_parallel_size), and a Space cannot give vLLM's workers what tensor parallel "
            "needs (no --shm-size or --ipc=host: NCCL fails in 64 MiB of /dev/shm, vLLM 1710); "
            "fix: --target hf-endpoint (x2, x4 instances), or a profile for one GPU"
        )
    if profile.effective_port < 1024:
        raise RefusedError(
            f"deploy --target hf-space: port {profile.effective_port}: a Space runs as UID {UID}, "
            "which cannot bind a port below 1024; fix: --set port=7860 (the Spaces default)"
        )


def storage_tier(weights_bytes: int | None) -> str:
    """The smallest persistent storage that holds the weights and the caches ('medium' unknown)."""
    if weights_bytes is None:
        return "medium"
    need_gb = weights_bytes / 1e9 + CACHE_HEADROOM_GB
    return next((t for t, gb in STORAGE_GB.items() if need_gb <= gb), "large")


def front_matter(
    profile: Profile, choice: Choice, *, timing: Timing | None = None
) -> dict[str, Any]:
    timing = timing or Timing()
    fit = choice.report.fit if choice.report else None
    meta: dict[str, Any] = {
        "title": profile.model_id.rsplit("/", 1)[-1][:30],
        "sdk": "docker",
        "app_port": profile.effective_port,
        "suggested_hardware": HARDWARE[choice.gpu] if choice.gpu else CPU_HARDWARE,
        "suggested_storage": storage_tier(fit.weights_bytes if fit else None),
        # the launcher's own ready timeout: a cold start of minutes is not "unhealthy"
        "startup_duration_timeout": f"{-(-start_budget_s(timing) // 60)}m",
        "pinned": False,
    }
    if not profile.model.startswith(BUILTIN_MODEL_PREFIX):
        meta["models"] = [profile.model]
    return meta


def readme(profile: Profile, choice: Choice, *, timing: Timing | None = None) -> str:
    meta = yamlout.dump(front_matter(profile, choice, timing=timing))
    secrets = [profile.api_key_env] if profile.api_key_env else []
    secret_line = (
        f"Set `{'`, `'.join([*secrets, 'HF_TOKEN'])}` as secrets in the Space's settings "
        f"(`{secrets[0]}` is required: the server refuses requests without it; `HF_TOKEN` only "
        "for gated models)."
        if secrets
        else "Set `HF_TOKEN` as a secret in the Space's settings if the model is gated."
    )
    return (
        f"---\n{meta}---\n\n"
        f"# {profile.model_id}\n\n"
        "An OpenAI-compatible endpoint served by vLLM, launched and supervised by `serve` "
        "(rendered by `serve deploy --target hf-space`; edit the source profile, not these "
        "files).\n\n"
        f"- {secret_line}\n"
        f"- Attach persistent storage: the weights and vLLM's compile cache are kept in `{DATA}` "
        "and a restart is warm.\n"
        '- Clients: `OpenAI(base_url="https://<owner>-<space>.hf.space/v1")`; the Space is '
        f"ready when `/v1/models` lists `{profile.model_id}`.\n"
    )


def dockerfile(profile: Profile, *, image: str = DEFAULT_IMAGE, bundle: str | None = None) -> str:
    port = profile.effective_port
    copy = (f"COPY --chown={UID}:{UID} {BUNDLE_FILE} {BUNDLE_IN_CONTAINER}\n"
            if bundle and not is_url(bundle) else "")  # fmt: skip
    source = bundle_source(bundle)
    # the entrypoint unpacks it into {DATA} before the launch (a bundle it cannot use: one line)
    restore = f" \\\n    {BUNDLE_VAR}={source}" if source else ""
    return f"""\
# Rendered by `serve deploy --target hf-space`. A Space runs this image as UID {UID} and keeps
# only {DATA} across restarts: caches go there, and nothing is written under /root.
FROM {image}

USER 0
# torch and triton look the user up by UID: give {UID} a passwd entry and a home of its own
RUN (getent passwd {UID} >/dev/null \\
        || useradd --uid {UID} --no-create-home --home-dir {HOME} user) \\
    && mkdir -p {HOME} {DATA} /etc/serve \\
    && chown {UID}:{UID} {HOME} {DATA}
COPY --chown={UID}:{UID} {PROFILE_FILE} {PROFILE_IN_CONTAINER}
{copy}
ENV HOME={HOME} \\
    PROFILE={PROFILE_IN_CONTAINER} \\
    SERVE_HOST=0.0.0.0 \\
    HF_HOME={DATA}/huggingface \\
    VLLM_CACHE_ROOT={DATA}/vllm \\
    TRITON_CACHE_DIR={DATA}/triton \\
    TORCHINDUCTOR_CACHE_DIR={DATA}/torchinductor \\
    CUDA_CACHE_PATH={DATA}/nv \\
    FLASHINFER_WORKSPACE_BASE={DATA} \\
    XDG_CACHE_HOME={DATA}/cache{restore}
USER {UID}
EXPOSE {port}
# The base image's entrypoint (tini, then `serve launch --profile $PROFILE`) is kept: phases, the
# one-line diagnosis and the exit code reach the Space's logs.
"""


def render(
    profile: Profile, choice: Choice, *, image: str = DEFAULT_IMAGE, bundle: str | None = None
) -> dict[str, str]:
    """File name -> text, for `serve deploy --target hf-space` (the Space repository's files; a
    bundle FILE is copied beside them by `serve deploy`)."""
    refuse_unrunnable(profile)
    return {
        "README.md": readme(profile, choice),
        "Dockerfile": dockerfile(profile, image=image, bundle=bundle),
        PROFILE_FILE: profile_yaml(profile),
    }
