"""The numbers in deployment files, each from the profile through one named function.

Pure. The reason for each value is its docstring; the deploy tests read the values back from the
rendered files and compare them with these functions.
"""

from __future__ import annotations

from ..launch.options import Timing, stop_grace
from ..profile import BUILTIN_MODEL_PREFIX, Profile

# The orchestrator's stop must outlast the launcher's own SIGTERM -> SIGKILL wait, plus the time
# the launcher takes to check that the group and its GPU memory are gone: else the runtime's
# SIGKILL hits the launcher mid-stop and the engine is never asked to drain.
STOP_MARGIN_S = 10
# NCCL moves tensor-parallel traffic through /dev/shm; Docker's 64 MiB default fails it (vLLM docs:
# "use --ipc=host or --shm-size"); 16 GiB is the figure vLLM's Docker docs use for tensor parallel.
SHM_TENSOR_PARALLEL = "16gb"
# One GPU still passes requests between the API server and the engine process through shared
# memory message queues; 1 GiB leaves room above the 64 MiB default (a margin, not a measurement).
SHM_ONE_GPU = "1gb"


def gpus_needed(profile: Profile) -> int:
    """GPUs one host (one pod) needs: tensor x pipeline x data parallel on one node, the
    profile's gpus_per_node over several; 0 for the built-in CPU model."""
    if profile.model.startswith(BUILTIN_MODEL_PREFIX):
        return 0
    return profile.plan.gpus_per_node


def gpus_total(profile: Profile) -> int:
    """GPUs of the whole server, all nodes together (0 for the built-in CPU model)."""
    return gpus_needed(profile) * profile.plan.nodes


def start_budget_s(timing: Timing) -> int:
    """How long a health check must wait before a failure counts: as long as the launcher waits.

    The launcher already ends a start that is hung (no output, phase or CPU for --stall-timeout)
    or too slow (--ready-timeout, 30 min by default), with a diagnosed exit code; a probe budget
    shorter than that kills healthy cold starts, which are minutes of silent compilation and
    weight loading (AIBrix 772, KServe 5062)."""
    return int(timing.ready_timeout)


def stop_grace_s(profile: Profile, timing: Timing) -> int:
    """The orchestrator's SIGTERM -> SIGKILL wait: the launcher's grace (at least vLLM's
    shutdown_timeout drain + 10 s) plus STOP_MARGIN_S."""
    return int(stop_grace(timing.grace, profile.shutdown_timeout)) + STOP_MARGIN_S


def shm_size(profile: Profile) -> str:
    """/dev/shm for each container (see SHM_TENSOR_PARALLEL and SHM_ONE_GPU): NCCL is in play as
    soon as the server has more than one GPU, on this host or over several."""
    return SHM_TENSOR_PARALLEL if gpus_total(profile) > 1 else SHM_ONE_GPU


def join_budget_s(timing: Timing) -> int:
    """How long node 0 waits for the other nodes of a multi-node server to appear, before it
    starts its own: as long as a start may take (start_budget_s). A node that appears later is a
    node being provisioned or pulling a multi-GB image, not one that failed; a wait that ends
    sooner restarts the whole group (LeaderWorkerSet: RecreateGroupOnPodRestart) and makes it
    wait again."""
    return start_budget_s(timing)


def group_start_budget_s(timing: Timing) -> int:
    """How long node 0's start probe waits: the nodes' wait (join_budget_s) then the server's own
    start (start_budget_s), which come one after the other."""
    return join_budget_s(timing) + start_budget_s(timing)
