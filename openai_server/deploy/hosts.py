"""Plain hosts for a profile over several nodes: one shell script per node (`node-0.sh`, ...) and
the profile. Pure: text built from the validated profile; checked in the tests by shellcheck.

Each script runs the same per-node command as the LeaderWorkerSet's pods (k8s_lws.py, whose
docstring states the contract `serve launch --node-rank/--head-address` must implement), with the
node's rank written in and the head's address (node 0's, as every node reaches it) given as the
script's argument, e.g. `sh node-1.sh 10.0.0.1`. The profile's own master_addr or
data_parallel_address, when set, is the default. Copy the directory to every node; node 0 serves
the API once the others have joined it.
"""

from __future__ import annotations

from ..profile import Profile
from .compose import PROFILE_FILE, profile_yaml


def head_default(profile: Profile) -> str | None:
    """The head's address the profile itself names, if any."""
    return profile.master_addr or profile.data_parallel_address


def script(profile: Profile, rank: int) -> str:
    nodes = profile.plan.nodes
    role = "the head: it serves the API" if rank == 0 else "a worker: it joins node 0"
    usage = f"usage: node-{rank}.sh HEAD_ADDRESS (the address of node 0 that every node reaches)"
    default = head_default(profile)
    head = f'"${{1:-{default}}}"' if default else f'"${{1:?{usage}}}"'
    lines = [
        "#!/bin/sh",
        f"# Node {rank} of {nodes} of one vLLM server ({role}); rendered by `serve deploy",
        "# --target hosts` from a validated profile: edit the source profile, not this file.",
        f"# Run on node {rank}: sh node-{rank}.sh HEAD_ADDRESS, where HEAD_ADDRESS is node 0's",
        "# address as every node reaches it. PROFILE overrides the profile's path.",
        "set -eu",
        f"head_address={head}",
        f'profile="${{PROFILE:-$(dirname -- "$0")/{PROFILE_FILE}}}"',
        f'exec serve launch --profile "$profile" --node-rank {rank} --head-address "$head_address"',
    ]
    return "\n".join(lines) + "\n"


def render(profile: Profile) -> dict[str, str]:
    """File name -> text, for `serve deploy --target hosts`."""
    out = {f"node-{rank}.sh": script(profile, rank) for rank in range(profile.plan.nodes)}
    out[PROFILE_FILE] = profile_yaml(profile)
    return out
