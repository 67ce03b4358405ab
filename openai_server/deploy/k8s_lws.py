r"""A LeaderWorkerSet for a profile over several nodes: one group of `nodes` pods, the leader (node
0) serving the API and the workers joining it. Pure: built as data, serialised once; validated in
the tests against LeaderWorkerSet's own CRD schema (tests/schemas/) and, for the core objects and
the pod templates, by kubernetes-validate.

The contract with the launcher. Every pod runs the same per-node command,

    serve launch --profile "$PROFILE" --node-rank "$LWS_WORKER_INDEX" \
        --head-address "$LWS_LEADER_ADDRESS"

which `serve launch` implements (multinode/).
`--node-rank 0` is the head: the Ray head (distributed_executor_backend: ray) or rank 0 of vLLM's
own launcher (mp: `--nnodes N --node-rank 0 --master-addr HEAD`), which serves the API and waits
until the other nodes have joined; a rank above 0 joins the head at `--head-address` (Ray: `ray
start --address`; mp: the same vLLM command with `--node-rank R --headless`; data parallel:
`--headless --data-parallel-start-rank`) and serves nothing. The profile is the same file on every
node (the ConfigMap); LeaderWorkerSet gives each pod LWS_LEADER_ADDRESS (the leader's DNS name),
LWS_GROUP_SIZE and LWS_WORKER_INDEX (kubernetes-sigs/lws, api/leaderworkerset/v1).

What the objects hold, and why:
- restartPolicy RecreateGroupOnPodRestart: one pod lost is the whole model lost (every node holds
  a slice of it), so the group restarts together rather than one node rejoining a dead group.
- startupPolicy LeaderCreated: the workers start with the leader, not once it is ready (the leader
  is ready only after they joined, so LeaderReady would never start them).
- The leader waits, before starting, until every worker pod has an address (LWS' headless service
  publishes pods that are not ready yet, so a worker resolves once it is scheduled and has an IP),
  for budgets.join_budget_s; a worker waits for the leader's address the same way. The join itself
  (Ray's node count, torch.distributed's rendezvous) is the launcher's.
- Probes on the leader only (as k8s.py: `serve probe` for start and readiness, GET /health for
  liveness), its start probe as long as the wait and a start together
  (budgets.group_start_budget_s); the workers answer no HTTP, and fail by exiting, which restarts
  the group.
- `nvidia.com/gpu` = gpus_per_node and a memory-backed /dev/shm (16 Gi) on every pod; VLLM_HOST_IP
  is each pod's own IP (the address vLLM gives the other nodes for it).
- The caches: a volume claim template, so each pod gets its own ReadWriteOnce claim on its node
  (one RWO volume cannot be mounted on two nodes), kept across group restarts; `--existing-claim`
  mounts one claim on every pod instead, which must then be ReadWriteMany.
- A Service that selects the leader only (worker-index "0"): only it serves the API.
"""

from __future__ import annotations

from typing import Any

from ..errors import ExitCode
from ..launch.options import Timing
from ..profile import Profile
from . import k8s, yamlout
from .budgets import group_start_budget_s, join_budget_s
from .compose import DEFAULT_IMAGE, probe_command

API_VERSION = "leaderworkerset.x-k8s.io/v1"
# The LeaderWorkerSet release whose CRD the rendered object is validated against (tests/schemas/).
LWS_RELEASE = "v0.10.0"
NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
# Each pod's own cache: room for a 405B-parameter checkpoint in bf16 (~812 GB) and the compile
# cache, since every node reads the whole checkpoint's files.
CACHE_SIZE = "1Ti"
POLL_S = 5  # how often a pod looks for the others' addresses while it waits
NODE_COMMAND = (
    'exec serve launch --profile "$PROFILE" --node-rank "$LWS_WORKER_INDEX" '
    '--head-address "$LWS_LEADER_ADDRESS"'
)


def _wait(target: str, what: str, budget: int) -> list[str]:
    """Shell lines that wait until `target` (a shell word) resolves, until $deadline; `what`
    goes into a double-quoted message."""
    give_up = f"serve: error: {what} has no address after {budget} s; the group restarts"
    return [
        f"until getent hosts {target} > /dev/null; do",
        '    if [ "$(date +%s)" -ge "$deadline" ]; then',
        f'        echo "{give_up}" >&2',
        f"        exit {int(ExitCode.START_FAILED)}",
        "    fi",
        f"    sleep {POLL_S}",
        "done",
    ]


def leader_script(timing: Timing) -> str:
    """Node 0: wait until every worker pod of the group has an address, then start."""
    budget = join_budget_s(timing)
    # worker i of the group is <lws>-<group>-<i>, in the leader's subdomain (<lws>-<group>.<sub>)
    worker = '"${LWS_LEADER_ADDRESS%%.*}-$i.${LWS_LEADER_ADDRESS#*.}"'
    loop = ["    " + line for line in _wait(worker, "worker $i", budget)]
    lines = [
        "set -eu",
        f"deadline=$(( $(date +%s) + {budget} ))",
        "i=1",
        'while [ "$i" -lt "$LWS_GROUP_SIZE" ]; do',
        *loop,
        "    i=$((i + 1))",
        "done",
        'echo "serve: the $LWS_GROUP_SIZE pods of the group have addresses" >&2',
        NODE_COMMAND,
    ]
    return "\n".join(lines) + "\n"


def worker_script(timing: Timing) -> str:
    """A node above 0: wait until the leader has an address, then join it."""
    budget = join_budget_s(timing)
    lines = [
        "set -eu",
        f"deadline=$(( $(date +%s) + {budget} ))",
        *_wait('"$LWS_LEADER_ADDRESS"', "the leader", budget),
        NODE_COMMAND,
    ]
    return "\n".join(lines) + "\n"


def _host_ip() -> dict[str, Any]:
    return {"name": "VLLM_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def objects(
    profile: Profile,
    *,
    name: str = "serve",
    image: str = DEFAULT_IMAGE,
    existing_claim: str | None = None,
    runtime_class: str | None = None,
    node_selector: dict[str, str] | None = None,
    timing: Timing | None = None,
) -> list[dict[str, Any]]:
    timing = timing or Timing()

    def template(role: str, script: str, serving: dict[str, Any] | None) -> dict[str, Any]:
        # tini stays PID 1 as in the image's own entrypoint: it reaps what the shell leaves
        command = ["tini", "--", "sh", "-c", script]
        box = k8s.container(profile, name=name, image=image, command=command,
                            extra_env=[_host_ip()], serving=serving)  # fmt: skip
        pod_volumes = k8s.volumes(profile, name, existing_claim)
        pod = k8s.pod_spec(profile, [box], pod_volumes, timing=timing,
                           runtime_class=runtime_class, node_selector=node_selector)  # fmt: skip
        labels = {**k8s.labels(name), "app.kubernetes.io/component": role}
        return {"metadata": {"labels": labels}, "spec": pod}

    group: dict[str, Any] = {
        "size": profile.plan.nodes,
        "restartPolicy": "RecreateGroupOnPodRestart",
        "leaderTemplate": template(
            "leader",
            leader_script(timing),
            k8s.probes(probe_command(profile), group_start_budget_s(timing)),
        ),
        "workerTemplate": template("worker", worker_script(timing), None),
    }
    if existing_claim is None:
        group["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "cache"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": CACHE_SIZE}},
                },
            }
        ]
    lws = {
        "apiVersion": API_VERSION,
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "labels": k8s.labels(name)},
        "spec": {"replicas": 1, "startupPolicy": "LeaderCreated", "leaderWorkerTemplate": group},
    }
    leader_only = {NAME_LABEL: name, WORKER_INDEX_LABEL: "0"}
    return [k8s.config_map(profile, name), lws, k8s.service(profile, name, leader_only)]


def render(profile: Profile, **options: Any) -> dict[str, str]:
    """File name -> text, for `serve deploy --target k8s-lws` (options: see `objects`)."""
    return {"serve.yaml": yamlout.dump_all(objects(profile, **options))}
