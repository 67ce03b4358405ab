"""`serve deploy`: the validated, preflighted profile rendered as another ecosystem's files."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import typer

from .. import loader
from ..cache.bundle import is_url
from ..cli_common import ProfileOpt, SetOpt, err, profile_ref
from ..errors import RefusedError
from ..preflight import gpus
from ..preflight.check import Target, run
from ..profile import Profile
from . import (
    bundles,
    compose,
    hf_endpoint,
    hf_space,
    hosts,
    k8s,
    k8s_lws,
    monitoring,
    skyserve,
    yamlout,
)
from .accelerators import Choice, choose
from .budgets import gpus_needed

# The vLLM of the image `serve deploy` targets (Dockerfile: vllm/vllm-openai:v0.26.0).
IMAGE_VLLM = "0.26"
TargetName = Literal["compose", "k8s", "k8s-lws", "hosts", "hf-space", "hf-endpoint", "skyserve"]
# Targets for a profile over several nodes (nodes > 1); the others run one host.
MULTI_NODE = ("k8s-lws", "hosts")
# Targets that rent a machine by its GPU kind, so the files must name one.
RENTED: dict[str, Callable[[int], list[str]]] = {
    "hf-space": lambda count: list(hf_space.HARDWARE) if count == 1 else [],
    "hf-endpoint": hf_endpoint.offers,
    "skyserve": lambda count: list(skyserve.ACCELERATORS),
}
NEXT = {
    "compose": "docker compose -f {out}/compose.yaml up -d",
    "k8s": "kubectl apply -f {out}/serve.yaml",
    "k8s-lws": "kubectl apply -f {out}/serve.yaml (LeaderWorkerSet installed in the cluster)",
    "hosts": "copy {out} to every node, then on node R: sh node-R.sh HEAD_ADDRESS",
    "hf-space": "push {out} to a Space repository (git or `hf upload --repo-type space`)",
    "hf-endpoint": "cd {out} && python apply.py",
    "skyserve": "sky serve up {out}/service.yaml",
}


OUT = Path("deploy")


def deploy_cmd(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    target: Annotated[
        TargetName,
        typer.Option(
            help="compose: compose.yaml + profile.yaml; k8s: serve.yaml (ConfigMap, PVC, "
            "Deployment, Service); k8s-lws (nodes > 1): serve.yaml (ConfigMap, LeaderWorkerSet, "
            "Service); hosts (nodes > 1): node-R.sh per node + profile.yaml; hf-space: "
            "README.md + Dockerfile + profile.yaml of a Docker Space; hf-endpoint: "
            "endpoint.json + apply.py (create_inference_endpoint); skyserve: service.yaml"
        ),
    ] = "compose",
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write into")] = OUT,
    gpu: Annotated[
        str | None,
        typer.Option(
            help="the target's GPUs, NAME[:COUNT] (k8s-lws, hosts: of one node); compose/k8s/"
            "k8s-lws/hosts: else GPU checks are skipped; "
            "hf-*/skyserve: else the smallest GPU the target rents that the profile fits"
        ),
    ] = None,
    image: Annotated[
        str, typer.Option(help="serve's image (a registry path for hf-* and skyserve)")
    ] = compose.DEFAULT_IMAGE,
    vllm_version: Annotated[
        str, typer.Option(help="the vLLM release in that image (flags are checked against it)")
    ] = IMAGE_VLLM,
    existing_claim: Annotated[
        str | None,
        typer.Option(
            help="k8s: use this PVC for the caches instead of creating one; k8s-lws: mount this "
            "ReadWriteMany PVC on every pod instead of one claim per pod"
        ),
    ] = None,
    runtime_class: Annotated[
        str | None, typer.Option(help="k8s, k8s-lws: the pods' runtimeClassName (e.g. nvidia)")
    ] = None,
    node_selector: Annotated[
        list[str] | None,
        typer.Option(help="k8s, k8s-lws: KEY=VALUE for the pods' nodeSelector; repeatable"),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="hf-endpoint: the endpoint's name (else the model's)")
    ] = None,
    repository: Annotated[
        str | None, typer.Option(help="hf-endpoint: the Hub repository (else the model)")
    ] = None,
    vendor: Annotated[str | None, typer.Option(help="hf-endpoint: aws, gcp, ...")] = None,
    region: Annotated[str | None, typer.Option(help="hf-endpoint: e.g. us-east-1")] = None,
    instance_type: Annotated[
        str | None, typer.Option(help="hf-endpoint: e.g. nvidia-l4 (else from the GPU)")
    ] = None,
    min_replicas: Annotated[
        int, typer.Option(min=0, help="hf-endpoint, skyserve: replicas at least")
    ] = 1,
    max_replicas: Annotated[
        int | None, typer.Option(min=1, help="hf-endpoint, skyserve: replicas at most")
    ] = None,
    target_qps: Annotated[
        float | None, typer.Option(min=0.01, help="skyserve: requests/s per replica to scale on")
    ] = None,
    with_monitoring: Annotated[
        bool,
        typer.Option(
            "--monitoring",
            help="also a Grafana dashboard (serve top's panels); k8s, k8s-lws: a ServiceMonitor",
        ),
    ] = False,
    cache_bundle: Annotated[
        str | None,
        typer.Option(
            help="compose, hf-space: a bundle FILE (copied beside the files) or URL; k8s: a URL, "
            "unpacked by an init container into the cache volume (`serve cache pack`)",
        ),
    ] = None,
    fleet_file: Annotated[
        Path | None,
        typer.Option(
            "--fleet",
            help="compose, k8s: one container running `serve fleet` on this fleet file "
            "(instead of --profile)",
        ),
    ] = None,
) -> None:
    """Render deployment files for a profile (after the same preflight as launch)."""
    if fleet_file is not None:
        if cache_bundle:
            raise RefusedError("deploy --fleet: --cache-bundle holds one profile's caches; fix: "
                               "unpack each model's bundle into the cache volume")  # fmt: skip
        options = TargetOptions(image, existing_claim, runtime_class, node_selector or [])
        deploy_fleet(fleet_file, target, out, gpu=gpu, vllm_version=vllm_version,
                     options=options, profile_given=bool(profile or set_))  # fmt: skip
        return
    prof = loader.load(profile_ref(profile), sets=set_ or []).profile
    options = TargetOptions(image=image, existing_claim=existing_claim,
                            runtime_class=runtime_class, node_selector=node_selector or [],
                            name=name, repository=repository, vendor=vendor, region=region,
                            instance_type=instance_type, min_replicas=min_replicas,
                            max_replicas=max_replicas, target_qps=target_qps,
                            monitoring=with_monitoring, cache_bundle=cache_bundle)  # fmt: skip
    deploy(prof, target, out, gpu=gpu, vllm_version=vllm_version, options=options)


def deploy(
    prof: Profile, target: TargetName, out: Path, *, gpu: str | None, vllm_version: str,
    options: TargetOptions,
) -> None:  # fmt: skip
    """The preflight (a rented target: the GPU chosen among its offers), then the files."""
    rented = target in RENTED
    refuse_node_count(prof, target)
    if options.cache_bundle and (note := bundles.check(options.cache_bundle, prof, target,
                                                       vllm_version)):  # fmt: skip
        err(f"note: {note}")
    if target == "hf-space":
        hf_space.refuse_unrunnable(prof)
    hardware = None if gpu and not rented else gpus.Hardware((), "none")
    report = run(prof, Target(gpu=None if rented else gpu, vllm_version=vllm_version,
                              check_port=False), hardware)  # fmt: skip
    if (refusal := report.refusal()) is not None:
        raise RefusedError(f"deploy: {refusal}")
    choice = None
    if rented:
        offers = RENTED[target](gpus_needed(prof))
        choice = choose(prof, offers, target=target, gpu_spec=gpu, vllm_version=vllm_version)
        print(f"serve: deploy: {choice.note}")
    files = _render(prof, target, choice, options)
    if options.monitoring:
        files.update(monitoring.files(prof, target))
    out.mkdir(parents=True, exist_ok=True)
    if options.cache_bundle and not is_url(options.cache_bundle):
        shutil.copyfile(options.cache_bundle, out / compose.BUNDLE_FILE)
        print(f"wrote {out / compose.BUNDLE_FILE}")
    for file, text in files.items():
        (out / file).write_text(text)
        if file.endswith(".sh"):
            (out / file).chmod(0o755)  # the hosts target's per-node scripts
        print(f"wrote {out / file}")
    print("next: " + NEXT[target].format(out=out))
    if options.monitoring:
        applied = (
            f"; kubectl apply -f {out}/{monitoring.SERVICE_MONITOR}" if "k8s" in target else ""
        )
        print(f"monitoring: import {out}/{monitoring.DASHBOARD} into Grafana{applied}")


def deploy_fleet(
    path: Path, target: TargetName, out: Path, *, gpu: str | None, vllm_version: str,
    options: TargetOptions, profile_given: bool,
) -> None:  # fmt: skip
    """Each model's preflight (refused in a line naming it), the placement on --gpu's GPUs, then
    the fleet's files (deploy/fleet.py)."""
    from ..fleet.placement import check_fleet
    from ..fleet.spec import load_fleet
    from . import fleet

    if target not in ("compose", "k8s"):
        raise RefusedError(f"deploy --fleet: --target {target} runs one model; fix: --target "
                           "compose or k8s")  # fmt: skip
    if profile_given:
        raise RefusedError("deploy --fleet: the fleet file names its models' profiles; fix: "
                           "drop --profile and --set (or put `set:` under a model)")  # fmt: skip
    spec = load_fleet(path)
    for m in spec.members:
        hardware = None if gpu else gpus.Hardware((), "none")
        report = run(m.resolved.profile, Target(gpu=gpu, vllm_version=vllm_version,
                                                check_port=False), hardware)  # fmt: skip
        if (refusal := report.refusal()) is not None:
            raise RefusedError(f"deploy --fleet: {spec.source}: models.{m.name}: {refusal}")
    if gpu:
        planned = gpus.planned(gpu)
        check_fleet(spec.members, planned.count, spec.source)
    if target == "compose":
        files = fleet.compose_files(spec, image=options.image)
    else:
        objects = fleet.k8s_objects(spec, image=options.image,
                                    existing_claim=options.existing_claim,
                                    runtime_class=options.runtime_class,
                                    node_selector=options.selector())  # fmt: skip
        files = {"serve.yaml": yamlout.dump_all(objects)}
    for file, text in files.items():
        (out / file).parent.mkdir(parents=True, exist_ok=True)
        (out / file).write_text(text)
        print(f"wrote {out / file}")
    print("next: " + NEXT[target].format(out=out))


def refuse_node_count(prof: Profile, target: str) -> None:
    """One line when the target runs another number of nodes than the profile spans."""
    nodes = prof.plan.nodes
    if nodes > 1 and target not in MULTI_NODE:
        raise RefusedError(
            f"deploy --target {target}: the profile spans {nodes} nodes (nodes: {nodes}), and "
            f"{target} runs one host; fix: --target {' or '.join(MULTI_NODE)}"
        )
    if nodes == 1 and target in MULTI_NODE:
        raise RefusedError(
            f"deploy --target {target}: the profile runs on one node (nodes: 1); fix: --target k8s "
            "or compose, or set nodes"
        )


@dataclass(frozen=True)
class TargetOptions:
    """The command line's per-target options, as data: each target's renderer reads its own."""

    image: str
    existing_claim: str | None = None  # k8s, k8s-lws
    runtime_class: str | None = None  # k8s, k8s-lws
    node_selector: list[str] = field(default_factory=list)  # k8s, k8s-lws: KEY=VALUE
    name: str | None = None  # hf-endpoint
    repository: str | None = None  # hf-endpoint
    vendor: str | None = None  # hf-endpoint
    region: str | None = None  # hf-endpoint
    instance_type: str | None = None  # hf-endpoint
    min_replicas: int = 1  # hf-endpoint, skyserve
    max_replicas: int | None = None  # hf-endpoint, skyserve
    target_qps: float | None = None  # skyserve
    monitoring: bool = False  # every target: + a Grafana dashboard; k8s*: + a ServiceMonitor
    cache_bundle: str | None = None  # compose, hf-space: a file or URL; k8s: a URL

    def selector(self) -> dict[str, str]:
        pairs = [item.partition("=") for item in self.node_selector]
        if any(not key or not eq for key, eq, _ in pairs):
            raise typer.BadParameter("give KEY=VALUE", param_hint="'--node-selector'")
        return {key: value for key, _, value in pairs}


def _render(prof: Profile, target: str, choice: Choice | None, o: TargetOptions) -> dict[str, str]:
    if target == "compose":
        return compose.render(prof, image=o.image, bundle=o.cache_bundle)
    if target == "hosts":
        return hosts.render(prof)
    if target == "k8s":
        return k8s.render(prof, image=o.image, existing_claim=o.existing_claim,
                          runtime_class=o.runtime_class, node_selector=o.selector(),
                          bundle_url=o.cache_bundle)  # fmt: skip
    if target == "k8s-lws":
        return k8s_lws.render(prof, image=o.image, existing_claim=o.existing_claim,
                              runtime_class=o.runtime_class,
                              node_selector=o.selector())  # fmt: skip
    assert choice is not None
    if target == "hf-space":
        return hf_space.render(prof, choice, image=o.image, bundle=o.cache_bundle)
    if target == "hf-endpoint":
        most = max(o.max_replicas or 1, o.min_replicas, 1)
        return hf_endpoint.render(prof, choice, image=o.image, name=o.name,
                                  repository=o.repository, vendor=o.vendor, region=o.region,
                                  instance_type=o.instance_type, min_replica=o.min_replicas,
                                  max_replica=most)  # fmt: skip
    return skyserve.render(prof, choice, image=o.image, min_replicas=o.min_replicas,
                           max_replicas=o.max_replicas, target_qps=o.target_qps)  # fmt: skip
