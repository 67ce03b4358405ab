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
from . import compose

# The vLLM of the image `serve deploy` targets (Dockerfile: vllm/vllm-openai:v0.26.0).
IMAGE_VLLM = "0.26"


def deploy_cmd(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    target: Annotated[
        Literal["compose"], typer.Option(help="compose: a docker compose file and the profile")
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
) -> None:
    """Render deployment files for a profile (after the same preflight as launch)."""
    prof = loader.load(profile_ref(profile), sets=set_ or []).profile
    hardware = None if gpu else gpus.Hardware((), "none")
    report = run(prof, Target(gpu=gpu, vllm_version=vllm_version, check_port=False), hardware)
    refused = [c for c in report.checks if c.status == "refused"]
    if refused:
        fix = f"; fix: {refused[0].fix}" if refused[0].fix else ""
        raise RefusedError(f"deploy: {refused[0].reason}{fix}")
    files = compose.render(prof, image=image)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    print(f"next: docker compose -f {out / 'compose.yaml'} up -d  ({target})")
