"""`serve deploy`: the validated, preflighted profile rendered as another ecosystem's files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from .. import loader
from ..cli_common import ProfileOpt, SetOpt, profile_ref
from ..errors import RefusedError
from ..preflight import gpus
from ..preflight.check import Target, run
from . import compose, k8s

# The vLLM of the image `serve deploy` targets (Dockerfile: vllm/vllm-openai:v0.26.0).
IMAGE_VLLM = "0.26"


def deploy_cmd(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    target: Annotated[
        Literal["compose", "k8s"],
        typer.Option(
            help="compose: compose.yaml + profile.yaml; k8s: ConfigMap, PVC, Deployment, "
            "Service in serve.yaml"
        ),
    ] = "compose",
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write into")] = Path(
        "deploy"
    ),
    gpu: Annotated[
        str | None,
        typer.Option(help="the target host's GPUs, NAME[:COUNT] (else GPU checks are skipped)"),
    ] = None,
    image: Annotated[str, typer.Option(help="serve's image")] = compose.DEFAULT_IMAGE,
    vllm_version: Annotated[
        str, typer.Option(help="the vLLM release in that image (flags are checked against it)")
    ] = IMAGE_VLLM,
    existing_claim: Annotated[
        str | None, typer.Option(help="k8s: use this PVC for the caches instead of creating one")
    ] = None,
    runtime_class: Annotated[
        str | None, typer.Option(help="k8s: the pod's runtimeClassName (e.g. nvidia)")
    ] = None,
    node_selector: Annotated[
        list[str] | None, typer.Option(help="k8s: KEY=VALUE for the pod's nodeSelector; repeatable")
    ] = None,
) -> None:
    """Render deployment files for a profile (after the same preflight as launch)."""
    prof = loader.load(profile_ref(profile), sets=set_ or []).profile
    hardware = None if gpu else gpus.Hardware((), "none")
    report = run(prof, Target(gpu=gpu, vllm_version=vllm_version, check_port=False), hardware)
    refused = [c for c in report.checks if c.status == "refused"]
    if refused:
        fix = f"; fix: {refused[0].fix}" if refused[0].fix else ""
        raise RefusedError(f"deploy: {refused[0].reason}{fix}")
    if target == "compose":
        files = compose.render(prof, image=image)
    else:
        pairs = [item.partition("=") for item in node_selector or []]
        if any(not key or not eq for key, eq, _ in pairs):
            raise typer.BadParameter("give KEY=VALUE", param_hint="'--node-selector'")
        selector = {key: value for key, _, value in pairs}
        files = k8s.render(prof, image=image, existing_claim=existing_claim,
                           runtime_class=runtime_class, node_selector=selector)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    if target == "compose":
        print(f"next: docker compose -f {out / 'compose.yaml'} up -d")
    else:
        print(f"next: kubectl apply -f {out / 'serve.yaml'}")
