"""A Hugging Face Inference Endpoint for one profile: the keyword arguments of
`huggingface_hub.create_inference_endpoint` as JSON, and the one line of Python that applies them.
Pure: data in, data out.

The endpoint runs serve's image as a custom container: its entrypoint is `serve launch`, so
phases, the one-line diagnosis and the exit codes reach the endpoint's logs. An endpoint mounts no
files, so the validated profile travels as text in PROFILE_YAML (entrypoint.sh writes it to a
file). The endpoint's health route is vLLM's /health, which answers only once the server listens
(after the engine is up) and which `--api-key` leaves open.

Authentication: one `Authorization: Bearer` header cannot carry both a Hugging Face token and
vLLM's API key. A profile with `api_key_env` gets a public endpoint whose requests vLLM checks
against the key; one without gets an authenticated endpoint, which accepts only Hugging Face
tokens of the owner. Secrets are passed by name: `apply.py` reads their values from the
environment of whoever applies it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import RefusedError
from ..profile import BUILTIN_MODEL_PREFIX, Profile
from .accelerators import Choice
from .compose import DEFAULT_IMAGE, OPTIONAL_SECRETS, profile_yaml


@dataclass(frozen=True)
class Instance:
    vendor: str
    region: str
    instance_type: str
    sizes: tuple[str, ...]  # x1 = one GPU, x4 = four


# The GPU instances of Inference Endpoints per GPU `--gpu` knows, smallest memory first, as
# listed on its pricing page (huggingface.co/docs/inference-endpoints/support/pricing). Catalogs
# change: --vendor, --region and --instance-type override the row.
INSTANCES = {
    "T4": Instance("aws", "us-east-1", "nvidia-t4", ("x1", "x4")),
    "L4": Instance("aws", "us-east-1", "nvidia-l4", ("x1", "x4")),
    "A10G": Instance("aws", "us-east-1", "nvidia-a10g", ("x1", "x4")),
    "L40S": Instance("aws", "us-east-1", "nvidia-l40s", ("x1", "x4", "x8")),
    "A100-80": Instance("aws", "us-east-1", "nvidia-a100", ("x1", "x2", "x4", "x8")),
    "H100": Instance("gcp", "us-east4", "nvidia-h100", ("x1", "x2", "x4", "x8")),
    "H200": Instance("aws", "us-east-1", "nvidia-h200", ("x1", "x2", "x4", "x8")),
}
# vLLM's CPU build with the built-in model: 8 vCPUs, 16 GB.
CPU_INSTANCE = Instance("aws", "us-east-1", "intel-spr", ("x8",))
ENDPOINT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")  # 32 characters at most
APPLY_FILE = "apply.py"
ARGS_FILE = "endpoint.json"


def offers(count: int) -> list[str]:
    """The GPUs of which Inference Endpoints rent COUNT on one instance."""
    return [gpu for gpu, inst in INSTANCES.items() if f"x{count}" in inst.sizes]


def endpoint_name(profile: Profile) -> str:
    """The model's name, lower case, '-' for anything else, at most 32 characters."""
    base = re.sub(r"[^a-z0-9]+", "-", profile.model_id.rsplit("/", 1)[-1].lower()).strip("-")
    return base[:32].rstrip("-") or "serve"


def arguments(
    profile: Profile,
    choice: Choice,
    *,
    image: str = DEFAULT_IMAGE,
    name: str | None = None,
    repository: str | None = None,
    vendor: str | None = None,
    region: str | None = None,
    instance_type: str | None = None,
    min_replica: int = 1,
    max_replica: int = 1,
) -> dict[str, Any]:
    """The keyword arguments of create_inference_endpoint (secrets by name: see `apply_line`)."""
    name = name or endpoint_name(profile)
    if not ENDPOINT_NAME.fullmatch(name):
        raise RefusedError(
            f"deploy --target hf-endpoint: --name {name!r}: an endpoint name is 1 to 32 lower-case "
            "letters, digits and '-', not at either end"
        )
    repository = repository or profile.model
    if repository.startswith(BUILTIN_MODEL_PREFIX):
        raise RefusedError(
            f"deploy --target hf-endpoint: {profile.model} is generated inside the container and "
            "is not a Hub repository, which an endpoint requires; fix: --repository ORG/NAME (any "
            "repository you can read: it is mounted at /repository and not served)"
        )
    inst = INSTANCES[choice.gpu] if choice.gpu else CPU_INSTANCE
    size = f"x{choice.count}" if choice.gpu else inst.sizes[0]
    env = {"SERVE_HOST": "0.0.0.0", "PROFILE_YAML": profile_yaml(profile)}
    args: dict[str, Any] = {
        "name": name,
        "repository": repository,
        "framework": "pytorch",
        "task": "text-generation",
        "accelerator": "gpu" if choice.gpu else "cpu",
        "vendor": vendor or inst.vendor,
        "region": region or inst.region,
        "instance_type": instance_type or inst.instance_type,
        "instance_size": size,
        "min_replica": min_replica,
        "max_replica": max_replica,
        "custom_image": {"url": image, "port": profile.effective_port, "healthRoute": "/health"},
        "env": env,
        "type": "public" if profile.api_key_env else "authenticated",
    }
    if profile.revision:
        args["revision"] = profile.revision
    return args


def secret_names(profile: Profile) -> tuple[list[str], list[str]]:
    """(required, optional) secrets: the API key must be set where apply.py runs; HF_TOKEN may."""
    return ([profile.api_key_env] if profile.api_key_env else []), list(OPTIONAL_SECRETS)


def apply_line(profile: Profile) -> str:
    """One line of Python that creates the endpoint from endpoint.json and the environment."""
    required, optional = secret_names(profile)
    secrets = " | ".join(
        [f"{{k: os.environ[k] for k in {tuple(required)!r}}}"] * bool(required)
        + [f"{{k: os.environ[k] for k in {tuple(optional)!r} if k in os.environ}}"]
    )
    return (
        "import json, os; from huggingface_hub import create_inference_endpoint; "
        f"print(create_inference_endpoint(**json.load(open({ARGS_FILE!r})), secrets={secrets}))"
    )


def render(profile: Profile, choice: Choice, **options: Any) -> dict[str, str]:
    """File name -> text, for `serve deploy --target hf-endpoint` (options: see `arguments`)."""
    args = arguments(profile, choice, **options)
    header = (
        "# Creates the Inference Endpoint (rendered by `serve deploy --target hf-endpoint`):\n"
        "# run it next to endpoint.json, where HF_TOKEN (or `hf auth login`) can create one.\n"
    )
    return {
        ARGS_FILE: json.dumps(args, indent=2) + "\n",
        APPLY_FILE: header + apply_line(profile) + "\n",
    }
