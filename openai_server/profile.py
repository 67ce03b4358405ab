"""The typed profile: what a user may write, with ranges and closed sets. No I/O here.

Engine and server keys are top-level and named as vLLM's flags in snake_case, so a user who knows
`--max-num-seqs` knows `max_num_seqs`. A key left unset (None) is not rendered: vLLM's own default
applies, and `serve render --explain` says so. Every default lives in this file, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

# Re-exported: what other modules know as the profile's own names.
from .profile_values import BUILTIN_ADAPTERS as BUILTIN_ADAPTERS
from .profile_values import (
    BUILTIN_MODEL_PREFIX as BUILTIN_MODEL_PREFIX,
)
from .profile_values import BUILTIN_MODELS as BUILTIN_MODELS
from .profile_values import (
    ENV_NAME,
    HF_TOKEN_VALUE,
    MAX_SERVED_MODEL_NAME,
    AdapterSource,
    Arg,
    FlagValue,
    HostValue,
    ServedName,
    Text,
    builtin_known,
    check_json,
    not_an_option,
    secret_error,
    secret_flag,
    valid_host,
    valid_interface,
)
from .profile_values import (
    NETWORK_INTERFACE_VARS as NETWORK_INTERFACE_VARS,
)
from .profile_values import UNECHOED_ERRORS as UNECHOED_ERRORS
from .profile_values import (
    is_secret_name as is_secret_name,
)

Dtype = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
# The quantization methods that exist in every vLLM we support (0.26 to 0.33); preflight refines
# this against the vLLM that will actually run.
Quantization = Literal[
    "awq",
    "awq_marlin",
    "gptq",
    "gptq_marlin",
    "fp8",
    "compressed-tensors",
    "modelopt",
    "modelopt_fp4",
    "mxfp4",
    "experts_int8",
    "moe_wna16",
    "quark",
    "torchao",
]
KvCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]
LoadFormat = Literal[
    "auto",
    "pt",
    "safetensors",
    "npcache",
    "dummy",
    "gguf",
    "sharded_state",
    "tensorizer",
    "mistral",
]
Restart = Literal["never", "on-failure", "always"]
ServerKind = Literal["openai", "custom"]
# vLLM's executors that can span nodes: a Ray cluster, or its own processes (`mp`; over several
# nodes, its `--nnodes` launcher). vLLM has others (uni, external_launcher) that serve does not run.
ExecutorBackend = Literal["ray", "mp"]

# Keys vLLM's OpenAI server renders and the custom server (our /generate) has no use for.
OPENAI_SERVER_FEATURES = ("enable_auto_tool_choice", "tool_call_parser", "reasoning_parser",
                          "lora_modules")  # fmt: skip


class Strict(BaseModel):
    # strict: "16" is not an int, 1 is not a bool. forbid: a typo is an error, never ignored
    # (vLLM's own --config drops unknown keys and `false` booleans silently: vllm 51401, 43252).
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class Sampling(Strict):
    """Default sampling parameters; a request's own values win. Rendered as vLLM's
    --override-generation-config."""

    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="-1 or 0 disables top-k")
    max_tokens: int | None = Field(None, ge=1, description="default max_tokens of a request")
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)


class Profile(Strict):
    """A serve profile. See docs/profiles.md."""

    description: Text = Field("", description="one line shown by `serve profiles`")
    extends: Arg | None = Field(
        None,
        description="a built-in profile name or a path (relative to this file) to inherit from",
    )

    # --- engine (vLLM flags) ---
    model: Annotated[FlagValue, AfterValidator(builtin_known)] = Field(
        ..., min_length=1, description="Hugging Face id, local directory, or builtin:tiny-phi3"
    )
    served_model_name: ServedName | None = Field(
        None,
        description="the id clients use; default: the model",
        json_schema_extra={"minLength": 1, "maxLength": MAX_SERVED_MODEL_NAME},
    )
    tokenizer: FlagValue | None = None
    revision: FlagValue | None = None
    trust_remote_code: bool | None = None
    dtype: Dtype | None = None
    quantization: Quantization | None = None
    load_format: LoadFormat | None = None
    max_model_len: int | None = Field(None, ge=16, le=10_485_760)
    max_num_seqs: int | None = Field(None, ge=1, le=65_536)
    max_num_batched_tokens: int | None = Field(None, ge=16)
    gpu_memory_utilization: float | None = Field(None, gt=0.0, le=1.0)
    kv_cache_dtype: KvCacheDtype | None = None
    enable_prefix_caching: bool | None = None
    enforce_eager: bool | None = Field(None, description="false = capture CUDA graphs")
    enable_sleep_mode: bool | None = Field(
        None,
        description="CUDA only: lets the engine put its weights to host memory and free its GPU "
        "memory (POST /sleep, /wake_up, served with env VLLM_SERVER_DEV_MODE=1); `serve fleet` "
        "sets it to swap models",
    )
    tensor_parallel_size: int | None = Field(None, ge=1, le=64)
    pipeline_parallel_size: int | None = Field(None, ge=1, le=64)
    nvlink_multicast: bool | None = Field(
        None,
        description="with tensor/pipeline parallel: false renders all-reduce that needs no NVLink "
        "multicast, true lets vLLM choose; default: false where NCCL_NVLS_ENABLE=0, "
        "TORCH_SYMM_MEM_DISABLE_MULTICAST=1 or NVSHMEM_DISABLE_NVLS=1 is set (multicast.py)",
    )
    # --- several nodes (docs/multinode.md): the per-node plan, checked by _parallel_plan ---
    nodes: int | None = Field(
        None, ge=1, le=256, description="serve's own: the hosts one server spans; default 1"
    )
    gpus_per_node: int | None = Field(
        None, ge=1, le=64, description="serve's own: the GPUs each node gives it; default: tensor "
        "x pipeline x data parallel / nodes",
    )  # fmt: skip
    cross_node_tensor_parallel: bool | None = Field(
        None, description="serve's own: allow tensor_parallel_size > gpus_per_node (an "
        "all-reduce per layer over the network); default false",
    )  # fmt: skip
    distributed_executor_backend: ExecutorBackend | None = Field(
        None, description="ray: a Ray cluster; mp: vLLM's own processes (over nodes: its --nnodes "
        "launcher); nodes > 1 with model parallel needs one",
    )  # fmt: skip
    data_parallel_size: int | None = Field(None, ge=1, le=1024, description="model replicas")
    data_parallel_size_local: int | None = Field(
        None, ge=1, le=64, description="the replicas on each node (data parallel over nodes)"
    )
    master_addr: HostValue | None = Field(
        None, description="mp over nodes: node 0's address, which the other nodes reach; default: "
        "given per node (`serve launch --head-address`)",
    )  # fmt: skip
    master_port: int | None = Field(
        None, ge=1, le=65_535, description="mp over nodes: node 0's rendezvous port (vLLM: 29501)"
    )
    data_parallel_address: HostValue | None = Field(
        None, description="data parallel over nodes: node 0's address; default: given per node "
        "(`serve launch --head-address`)",
    )  # fmt: skip
    data_parallel_rpc_port: int | None = Field(
        None, ge=1, le=65_535, description="data parallel: node 0's RPC port"
    )
    network_interface: Arg | None = Field(
        None, description="serve's own: the interface nodes talk over (eth0); rendered as "
        "NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME",
    )  # fmt: skip
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="numpy's range (vLLM seeds it)")
    speculative_config: dict[str, Any] | None = Field(
        None,
        description="vLLM's --speculative-config, e.g. {method: ngram, num_speculative_tokens: 4}",
    )
    structured_outputs_config: dict[str, Any] | None = Field(
        None,
        description="vLLM's --structured-outputs-config (named tool_choice, response_format), e.g. "
        "{backend: xgrammar, disable_any_whitespace: true}",
    )
    shutdown_timeout: int | None = Field(
        None, ge=0, le=3600, description="seconds vLLM drains in-flight requests on SIGTERM"
    )
    chat_template: Annotated[Text, AfterValidator(not_an_option)] | None = Field(
        None, description="a template file or an inline Jinja template"
    )
    download_dir: FlagValue | None = None
    generation_config: FlagValue | None = Field(
        None,
        description="auto: the model's generation_config.json (vLLM's default), vllm: vLLM's own "
        "defaults, or a directory holding a generation_config.json",
    )

    # --- features users configure most (docs/profiles.md: "Tool calling, reasoning, LoRA") ---
    enable_auto_tool_choice: bool | None = Field(
        None, description="the model may call tools on its own (tool_choice: auto); needs "
        "tool_call_parser",
    )  # fmt: skip
    tool_call_parser: FlagValue | None = Field(
        None, description="how vLLM reads tool calls in the model's output (hermes, llama3_json, "
        "mistral, ...); named tool_choice needs one too; `serve check` knows each vLLM's names",
    )  # fmt: skip
    reasoning_parser: FlagValue | None = Field(
        None, description="splits the model's reasoning into `reasoning` (deepseek_r1, qwen3, "
        "...); `serve check` knows each vLLM's names",
    )  # fmt: skip
    enable_lora: bool | None = Field(
        None, description="serve LoRA adapters; lora_modules implies it"
    )
    lora_modules: dict[ServedName, AdapterSource] | None = Field(
        None, description="adapter name (the `model` clients send) -> a local PEFT adapter "
        "directory, a Hub id, or builtin:tiny-phi3-lora",
    )  # fmt: skip
    max_loras: int | None = Field(
        None, ge=1, le=1024, description="adapters in one batch (vLLM: 1)"
    )
    max_lora_rank: int | None = Field(
        None, ge=1, description="the largest adapter rank served (vLLM: 16; 8, 16, 32, 64, ...)"
    )
    max_cpu_loras: int | None = Field(
        None, ge=1, description="adapters cached in CPU memory (vLLM: max_loras)"
    )
    allow_runtime_lora_updating: bool | None = Field(
        None, description="load and unload adapters at run time (/v1/load_lora_adapter); sets "
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING for the server",
    )  # fmt: skip

    sampling: Sampling = Field(default_factory=Sampling)

    # --- server ---
    server: ServerKind = Field("openai", description="openai: vLLM's server; custom: ours (SSE)")
    host: Annotated[str, AfterValidator(valid_host)] = Field(
        "127.0.0.1", min_length=1, description="an IP address or a host name (RFC 1123)"
    )
    port: int | None = Field(
        None, ge=1, le=65_535, description="default 8000 (openai) / 7860 (custom)"
    )
    api_key_env: str | None = Field(
        None, description="name of the environment variable holding the API key (never the key)"
    )
    python: Arg | None = Field(
        None, description="interpreter that has vLLM; default: the one running serve"
    )
    env: dict[str, Arg] = Field(
        default_factory=dict,
        description="extra environment for the server process; never a secret's value",
    )
    extra_args: list[Arg] = Field(
        default_factory=list, description="appended verbatim to the vLLM command (escape hatch)"
    )

    # --- supervision ---
    restart: Restart = "never"

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not ENV_NAME.match(v):
            raise ValueError("must be an environment variable name like VLLM_API_KEY")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not ENV_NAME.match(name):
                raise PydanticCustomError(
                    "env_name",
                    "not an environment variable name; use letters, digits and '_', not a digit "
                    "first",
                    {"key": name},
                )
        return v

    # The secret checks run before the type checks, so that no error ever repeats the value.
    @field_validator("env", mode="before")
    @classmethod
    def _no_secrets_in_env(cls, v: Any) -> Any:
        for name, value in v.items() if isinstance(v, dict) else ():
            if value == "" or not isinstance(name, str):
                continue
            if is_secret_name(name) or (isinstance(value, str) and HF_TOKEN_VALUE.search(value)):
                also = " or name it with api_key_env" if "KEY" in name.upper() else ""
                fix = f"leave {name} in the launcher's environment (the server inherits it){also}"
                raise secret_error(fix, key=name)
        return v

    @field_validator("extra_args", mode="before")
    @classmethod
    def _no_secrets_in_argv(cls, v: Any) -> Any:
        args = [a if isinstance(a, str) else "" for a in v] if isinstance(v, list) else []
        for i, arg in enumerate(args):
            flag = secret_flag(arg)
            takes_value = "=" in arg or (i + 1 < len(v) and not args[i + 1].startswith("-"))
            if flag == "--api-key" or (flag and takes_value):
                fix = (
                    "name the variable that holds the key with api_key_env (argv shows in `ps`)"
                    if flag == "--api-key"
                    else "leave HF_TOKEN in the launcher's environment (the server inherits it)"
                )
                raise secret_error(fix, what=f"{flag}: ")
            if HF_TOKEN_VALUE.search(arg):
                fix = "leave HF_TOKEN in the launcher's environment (the server inherits it)"
                raise secret_error(fix, what=f"item {i} looks like a Hugging Face token: ")
        return v

    @field_validator("network_interface")
    @classmethod
    def _interface_name(cls, v: str | None) -> str | None:
        return None if v is None else valid_interface(v)

    @field_validator("speculative_config", "structured_outputs_config")
    @classmethod
    def _json_for_vllm(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        check_json(v, "")
        return v

    @model_validator(mode="after")
    def _features_together(self) -> Profile:
        # vLLM refuses these at start (cli_args.validate_parsed_serve_args, LoRAConfig), minutes in
        if self.enable_auto_tool_choice and not self.tool_call_parser:
            raise PydanticCustomError(
                "feature",
                "needs tool_call_parser (e.g. hermes)",
                {"key": "enable_auto_tool_choice"},
            )
        if self.lora_modules and self.enable_lora is False:
            raise PydanticCustomError(
                "feature", "adapters with enable_lora: false; remove one of them",
                {"key": "lora_modules"},
            )  # fmt: skip
        if self.lora_modules and self.model_id in self.lora_modules:
            raise PydanticCustomError(
                "feature", "{name!r} is the base model's own name; name the adapter otherwise",
                {"name": self.model_id, "key": "lora_modules"},
            )  # fmt: skip
        openai_only = [k for k in OPENAI_SERVER_FEATURES if getattr(self, k)]
        if self.server == "custom" and openai_only:
            raise PydanticCustomError(
                "feature", "vLLM's OpenAI server has it, the custom server (/generate) does not; "
                "use server: openai", {"key": openai_only[0]},
            )  # fmt: skip
        if self.max_cpu_loras and self.max_cpu_loras < (self.max_loras or 1):
            raise PydanticCustomError(
                "feature", "{cpu} is below max_loras ({gpu}); vLLM refuses it",
                {"cpu": self.max_cpu_loras, "gpu": self.max_loras or 1, "key": "max_cpu_loras"},
            )  # fmt: skip
        return self

    @model_validator(mode="after")
    def _parallel_plan(self) -> Profile:
        # vLLM finds these after minutes of start-up on every node, or hangs waiting for a rank
        # that no node will start
        problems = parallel_problems(self)
        if problems:
            key, message, ctx = problems[0]
            raise PydanticCustomError("parallel", message, {**ctx, "key": key})
        return self

    @property
    def plan(self) -> ParallelPlan:
        """How the GPUs are split over nodes (valid once the profile is: see _parallel_plan)."""
        tp, pp = self.tensor_parallel_size or 1, self.pipeline_parallel_size or 1
        dp, nodes = self.data_parallel_size or 1, self.nodes or 1
        per_node = self.gpus_per_node or max(1, tp * pp * dp // nodes)
        return ParallelPlan(nodes, per_node, tp, pp, dp, self.data_parallel_size_local,
                            self.distributed_executor_backend)  # fmt: skip

    @property
    def lora_enabled(self) -> bool:
        return bool(self.enable_lora or (self.lora_modules and self.enable_lora is None))

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (7860 if self.server == "custom" else 8000)

    @property
    def model_id(self) -> str:
        """The id /v1/models lists for this profile (a built-in model is listed by its name)."""
        if self.served_model_name:
            return self.served_model_name
        return self.model.removeprefix(BUILTIN_MODEL_PREFIX)


# ---------------------------------------------------------------- the per-node plan


@dataclass(frozen=True)
class ParallelPlan:
    """The GPUs of one server: `nodes` x `gpus_per_node` = tensor x pipeline x data parallel."""

    nodes: int
    gpus_per_node: int
    tensor: int
    pipeline: int
    data: int
    data_local: int | None
    backend: str | None

    @property
    def gpus(self) -> int:
        return self.tensor * self.pipeline * self.data

    @property
    def data_over_nodes(self) -> bool:
        """Data parallel replicas spread over the nodes, each replica inside one node."""
        return self.nodes > 1 and self.data_local is not None

    @property
    def nnodes_launcher(self) -> bool:
        """One model over several nodes with vLLM's own launcher (--nnodes, --node-rank)."""
        return self.nodes > 1 and not self.data_over_nodes and self.backend == "mp"


def parallel_problems(p: Profile) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, message, message values) for each way the parallel keys contradict one another, the
    first first. Messages are templates (PydanticCustomError's); the key is named by the loader."""
    tp, pp = p.tensor_parallel_size or 1, p.pipeline_parallel_size or 1
    dp, dpl, nodes = p.data_parallel_size or 1, p.data_parallel_size_local, p.nodes or 1
    total = tp * pp * dp
    product = "tensor x pipeline x data parallel" if dp > 1 else "tensor x pipeline parallel"
    out: list[tuple[str, str, dict[str, Any]]] = []
    v: dict[str, Any] = {"tp": tp, "pp": pp, "dp": dp, "dpl": dpl, "nodes": nodes,
                         "total": total, "product": product}  # fmt: skip
    if dpl is not None and dpl > dp:
        out.append(("data_parallel_size_local", "{dpl} is more than data_parallel_size ({dp})", v))
    elif dpl is not None and dp % dpl:
        out.append(("data_parallel_size_local", "{dpl} does not divide data_parallel_size ({dp})",
                    v))  # fmt: skip
    if p.gpus_per_node is not None and p.gpus_per_node * nodes != total:
        out.append(("gpus_per_node", "{gpn} x {nodes} node(s) = {have} GPUs, but {product} = "
                    "{total}; make them equal", {**v, "gpn": p.gpus_per_node,
                                                 "have": p.gpus_per_node * nodes}))  # fmt: skip
    elif total % nodes:
        out.append(("nodes", "{product} = {total} GPUs do not split evenly over {nodes} nodes; "
                    "set gpus_per_node", v))  # fmt: skip
    per_node = p.gpus_per_node or max(1, total // nodes)
    v["gpn"] = per_node
    if nodes > 1 and p.server == "custom":
        out.append(("nodes", "the custom server runs on one host; use server: openai", v))
    if nodes > 1 and dp > 1:
        if dpl is None:
            out.append(("data_parallel_size", "data parallel over {nodes} nodes needs "
                        "data_parallel_size_local (the replicas on each node)", v))  # fmt: skip
        elif dpl * tp * pp != per_node:
            out.append(("data_parallel_size_local", "{dpl} replicas of tensor x pipeline parallel "
                        "= {tp} x {pp} GPUs do not fill a node of gpus_per_node = {gpn}; each "
                        "node holds whole replicas", v))  # fmt: skip
    over_nodes = nodes > 1 and dpl is None  # one model over several nodes
    if over_nodes and p.distributed_executor_backend is None:
        out.append(("nodes", "{nodes} nodes serving one model need distributed_executor_backend: "
                    "ray (a Ray cluster) or mp (vLLM's own --nnodes launcher)", v))  # fmt: skip
    if over_nodes and not p.cross_node_tensor_parallel and (tp > per_node or per_node % tp):
        what = "is more than" if tp > per_node else "does not divide"
        out.append(("tensor_parallel_size", "{tp} {what} gpus_per_node ({gpn}): a tensor-parallel "
                    "group would span nodes (an all-reduce per layer over the network); put the "
                    "nodes in pipeline_parallel_size, or set cross_node_tensor_parallel: true",
                    {**v, "what": what}))  # fmt: skip
    if p.cross_node_tensor_parallel and nodes == 1:
        out.append(("cross_node_tensor_parallel", "true on one node; it needs nodes > 1", v))
    mp_launcher = nodes > 1 and dpl is None and p.distributed_executor_backend == "mp"
    for key in ("master_addr", "master_port"):
        if getattr(p, key) is not None and not mp_launcher:
            out.append((key, "only vLLM's multi-node launcher uses it (nodes > 1 with "
                        "distributed_executor_backend: mp); remove it", v))  # fmt: skip
    for key in ("data_parallel_address", "data_parallel_rpc_port"):
        if getattr(p, key) is not None and dp == 1:
            out.append((key, "only data parallel uses it (data_parallel_size > 1); remove it", v))
    if p.network_interface is not None:
        for var in NETWORK_INTERFACE_VARS:
            if var in p.env:
                out.append(("network_interface", "env sets {var} too, which network_interface "
                            "renders; remove one", {**v, "var": var}))  # fmt: skip
    return out
