"""The preflight rules: facts in, checks out (ok / warning / refused, each with reason and fix).

Pure: every fact (flag set, GPUs, model shape, whether the port is free) is gathered before, by
`check.gather`, so each rule is tested with plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..multicast import fuses_all_reduce
from ..profile import Profile
from . import memory
from .calibration import Calibration
from .features import DEFAULT_MAX_LORA_RANK, FeatureFacts
from .features import lines as feature_lines
from .flags import FlagSet, check_argv
from .gpus import GiB, Hardware
from .models import Shape
from .multinode import MultinodeFacts
from .multinode import lines as multinode_lines

Status = Literal["ok", "warning", "refused"]
# A "typical" request for the concurrency warning: prompt + output tokens.
TYPICAL_SEQUENCE_TOKENS = 1024
BF16_MIN_CC = (8, 0)
# KV memory a suggested max_model_len / gpu_memory_utilization keeps spare, so that it starts when
# followed: the overheads the model cannot see were off by up to 0.83 GiB per GPU (tensor parallel
# on H200s) before calibration; a rehearsal on the host narrows that.
SUGGESTION_MARGIN_BYTES = GiB // 2
CALIBRATED_MARGIN_BYTES = GiB // 8
FP8_COMPUTE_MIN_CC = (8, 9)
FP8_WEIGHT_ONLY_MIN_CC = (8, 0)  # vLLM runs FP8 checkpoints on Ampere as W8A16 (FP8 Marlin)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    reason: str
    fix: str = ""


@dataclass(frozen=True)
class Facts:
    profile: Profile
    argv: list[str]  # rendered engine/server flags
    flagset: FlagSet | None
    hardware: Hardware
    shape: Shape | None
    port_free: bool | None  # None: not checked (planning for another host)
    cpu_vllm: bool = False
    features: FeatureFacts = field(default_factory=FeatureFacts)
    multinode: MultinodeFacts = field(default_factory=MultinodeFacts)
    calibration: Calibration | None = None  # a rehearsal's measurement for this GPU and split


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    fit: memory.Fit | None = None
    settings: memory.Settings | None = None
    suggested_max_model_len: int | None = None
    suggested_gpu_memory_utilization: float | None = None

    @property
    def refused(self) -> bool:
        return any(c.status == "refused" for c in self.checks)

    def refusal(self) -> str | None:
        """The first refused check as one line, `reason; fix: fix`, or None: every command that
        stops on a refusal says it this way."""
        first = next((c for c in self.checks if c.status == "refused"), None)
        if first is None:
            return None
        return f"{first.reason}; fix: {first.fix}" if first.fix else first.reason

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == "warning"]

    def add(self, name: str, status: Status, reason: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, reason, fix))

    def as_json(self) -> dict[str, Any]:
        f, s = self.fit, self.settings
        out: dict[str, Any] = {
            "ok": not self.refused,
            "checks": [c.__dict__ for c in self.checks],
            "kv_cache_tokens": f.kv_cache_tokens if f else None,
            "max_concurrency_at_max_model_len": (round(f.max_concurrency, 2) if f else None),
            "weights_bytes": f.weights_bytes if f else None,
            "kv_bytes_per_token": f.kv_bytes_per_token if f else None,
            "available_kv_bytes": f.available_kv_bytes if f else None,
            "suggested_max_model_len": self.suggested_max_model_len,
            "suggested_gpu_memory_utilization": self.suggested_gpu_memory_utilization,
        }
        if f:
            out["memory"] = {k: v for k, v in f.__dict__.items() if k.endswith("_bytes")}
        if s:
            out["settings"] = dict(s.__dict__)
        return out


def _cc(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


# ---------------------------------------------------------------- rules


def check_flags(facts: Facts, report: Report) -> None:
    if facts.flagset is None:
        report.add(
            "vLLM flags",
            "warning",
            "no vLLM installed for this interpreter and no --vllm-version: flags not checked",
            "install vLLM, set `python:`, or pass --vllm-version {0.26..0.33}",
        )
        return
    problems = check_argv(facts.argv, facts.flagset, extra_args=facts.profile.extra_args)
    for p in problems:
        report.add("vLLM flags", "refused", f"{p.key}: {p.message}", f"change or remove `{p.key}`")
    if not problems:
        n = sum(1 for a in facts.argv if a.startswith("--"))
        report.add(
            "vLLM flags",
            "ok",
            f"{n} flags accepted by {facts.flagset.label} ({facts.flagset.source})",
        )


def check_parallel(facts: Facts, report: Report) -> None:
    """The GPUs of one node (the host checked, or --gpu NAME:COUNT) against the profile's per-node
    plan: one node holds gpus_per_node of them (all of them, on one node)."""
    p = facts.profile
    plan = p.plan
    tp, pp, per_node = plan.tensor, plan.pipeline, plan.gpus_per_node
    count = facts.hardware.count
    if per_node > count and plan.nodes > 1:
        report.add(
            "GPU count",
            "refused",
            f"gpus_per_node = {per_node} > {count} GPU(s) on this node ({facts.hardware.source})",
            f"use nodes with {per_node} GPUs, or spread the model over more nodes",
        )
    elif per_node > count:
        what = "tensor_parallel_size x pipeline_parallel_size" + (
            " x data_parallel_size" if plan.data > 1 else ""
        )
        report.add(
            "GPU count",
            "refused",
            f"{what} = {per_node} > {count} GPU(s) ({facts.hardware.source})",
            f"set tensor_parallel_size={max(1, count // pp)} or use a host with {per_node} GPUs",
        )
    else:
        nodes = f" on each of {plan.nodes} nodes" if plan.nodes > 1 else ""
        report.add("GPU count", "ok", f"{per_node} of {count} GPU(s) used{nodes}")
    shape = facts.shape
    if shape is not None and tp > 1:
        # a tensor-parallel group stays in one node unless the profile asks otherwise
        reach = count * plan.nodes if p.cross_node_tensor_parallel else count
        valid = [n for n in range(1, reach + 1) if shape.heads % n == 0] or [1]
        if shape.heads % tp:
            report.add(
                "attention heads",
                "refused",
                f"{shape.heads} attention heads are not divisible by tensor_parallel_size={tp}",
                f"use tensor_parallel_size in {valid}",
            )
        elif shape.kv_heads % tp and tp % shape.kv_heads:
            report.add(
                "attention heads",
                "refused",
                f"{shape.kv_heads} KV heads and tensor_parallel_size={tp}: "
                "neither divides the other",
                f"use tensor_parallel_size in {valid}",
            )
        else:
            report.add("attention heads", "ok", f"{shape.heads} heads split over {tp} GPUs")


def check_dtype(facts: Facts, report: Report) -> None:
    p, gpu = facts.profile, facts.hardware.gpus[0]
    cc = gpu.compute_capability
    if p.dtype == "bfloat16" and cc < BF16_MIN_CC:
        report.add(
            "dtype",
            "refused",
            f"dtype: 'bfloat16' is not supported on {gpu.name} "
            f"(compute capability {_cc(cc)} < 8.0)",
            "set dtype: half",
        )
    elif p.dtype in (None, "auto") and cc < BF16_MIN_CC:
        report.add(
            "dtype",
            "warning",
            f"dtype auto: a bfloat16 model is cast to float16 on {gpu.name} (compute capability "
            f"{_cc(cc)})",
            "set dtype: half to make it explicit",
        )
    else:
        report.add("dtype", "ok", f"{p.dtype or 'auto'} on compute capability {_cc(cc)}")
    fp8_weights = p.quantization in ("fp8", "modelopt")
    fp8_kv = (p.kv_cache_dtype or "auto").startswith("fp8")
    if not (fp8_weights or fp8_kv):
        return
    what = "quantization: fp8" if fp8_weights else f"kv_cache_dtype: {p.kv_cache_dtype}"
    if cc >= FP8_COMPUTE_MIN_CC:
        report.add("FP8", "ok", f"{what} on compute capability {_cc(cc)}")
    elif fp8_weights and cc >= FP8_WEIGHT_ONLY_MIN_CC:
        report.add(
            "FP8",
            "warning",
            f"{what}: {gpu.name} (compute capability {_cc(cc)} < 8.9) has no FP8 compute; "
            "vLLM runs the weights as W8A16 (FP8 Marlin), slower than on Ada/Hopper",
            "use a GPU with compute capability >= 8.9 for FP8 compute",
        )
    else:
        report.add(
            "FP8",
            "refused",
            f"{what} needs compute capability >= 8.9; {gpu.name} has {_cc(cc)}",
            "remove the FP8 setting (use an fp16 model or AWQ/GPTQ)",
        )


def check_free_memory(facts: Facts, report: Report, util: float) -> None:
    if facts.hardware.planned:
        return
    for index, gpu in enumerate(facts.hardware.gpus):
        if gpu.free_bytes is None:
            continue
        needed = int(gpu.total_bytes * util)
        if gpu.free_bytes >= needed:
            continue
        holders = [
            f"pid {p.pid} ({_gib(p.used_bytes) if p.used_bytes else '? GiB'}"
            + (", looks like an orphaned vLLM engine" if p.looks_like_vllm else "")
            + f"): {p.cmdline[:80] or 'not visible from here'}"
            for p in gpu.processes
        ]
        orphans = [str(p.pid) for p in gpu.processes if p.looks_like_vllm]
        fix = (
            f"stop the leftover vLLM processes (kill {' '.join(orphans)})"
            if orphans
            else f"free the GPU or set gpu_memory_utilization <= "
            f"{int(gpu.free_bytes / gpu.total_bytes * 100) / 100:.2f}"
        )
        report.add(
            "free GPU memory",
            "refused",
            f"GPU {index} has {_gib(gpu.free_bytes)} free; gpu_memory_utilization={util} needs "
            f"{_gib(needed)} of {_gib(gpu.total_bytes)}"
            + (f"; held by {'; '.join(holders)}" if holders else ""),
            fix,
        )
        return
    report.add("free GPU memory", "ok", f"at least {util:.0%} of each GPU is free")


def check_port(facts: Facts, report: Report) -> None:
    port = facts.profile.effective_port
    if facts.port_free is None:
        report.add("port", "ok", f"port {port} not checked (planning for another host)")
    elif facts.port_free:
        report.add("port", "ok", f"{facts.profile.host}:{port} is free")
    else:
        report.add(
            "port",
            "refused",
            f"port {port} on {facts.profile.host} is in use",
            "set port to a free one (--set port=N) or stop what listens there",
        )


def batch_defaults(gpu_name: str, total_bytes: int) -> tuple[int, int]:
    """vLLM's max_num_batched_tokens and max_num_seqs by device memory (EngineArgs.
    get_batch_defaults, OpenAI server context)."""
    if total_bytes >= 160 * GiB:
        return 16384, 1024
    if total_bytes >= 70 * GiB and "a100" not in gpu_name.lower():
        return 8192, 1024
    return 2048, 256


# vLLM's switch that leaves a multimodal checkpoint's vision encoder unloaded (MultiModalConfig,
# 0.26 to 0.33: every modality limited to 0 items), given through extra_args
LANGUAGE_MODEL_ONLY = "--language-model-only"


def default_settings(facts: Facts) -> memory.Settings:
    """The profile's values with vLLM's own defaults filled in (per GPU memory, like vLLM)."""
    p, gpu, shape = facts.profile, facts.hardware.gpus[0], facts.shape
    assert shape is not None  # callers check; not user input
    dtype_bytes = memory.BYTES_PER_ELEMENT.get(p.dtype or "auto", 2)
    kv = p.kv_cache_dtype or "auto"
    kv_bytes = dtype_bytes if kv == "auto" else memory.BYTES_PER_ELEMENT[kv]
    batched, seqs = batch_defaults(gpu.name, gpu.total_bytes)
    return memory.Settings(
        dtype_bytes=dtype_bytes,
        kv_bytes=kv_bytes,
        quantization=p.quantization,
        gpu_memory_utilization=p.gpu_memory_utilization or memory.DEFAULT_GPU_MEMORY_UTILIZATION,
        max_model_len=p.max_model_len or shape.max_positions,
        max_num_seqs=p.max_num_seqs or seqs,
        max_num_batched_tokens=p.max_num_batched_tokens or batched,
        enforce_eager=bool(p.enforce_eager),
        tensor_parallel_size=p.tensor_parallel_size or 1,
        pipeline_parallel_size=p.pipeline_parallel_size or 1,
        max_loras=(p.max_loras or 1) if p.lora_enabled else 0,
        max_lora_rank=p.max_lora_rank or DEFAULT_MAX_LORA_RANK,
        overhead_bytes=facts.calibration.overhead_bytes if facts.calibration else 0,
        fused_all_reduce=fuses_all_reduce(facts.argv),
        serve_vision=LANGUAGE_MODEL_ONLY not in facts.argv,
    )


def all_reduce_note(s: memory.Settings) -> str:
    """With tensor parallel, which all-reduce the prediction assumed: it moves ~1 GiB per GPU."""
    if s.tensor_parallel_size == 1:
        return ""
    if s.fused_all_reduce:
        workspace = memory.NON_TORCH_FUSED_ALL_REDUCE_BYTES / GiB
        return f"; counts vLLM's fused all-reduce workspace ({workspace:.2f} GiB per GPU)"
    return "; vLLM's fused all-reduce is off in this command (no workspace counted)"


def counted(shape: Shape) -> str:
    """What the memory model counted, in one line: experts, attention kinds, quantization, and
    where the weight figure comes from."""
    parts = [f"{shape.architecture or 'model'}: {shape.layers} layers"]
    if shape.moe:
        parts.append(shape.moe.describe())
    kinds = shape.kinds or ("full",) * shape.layers
    if shape.mla:
        attention = f"MLA latent {shape.mla.latent} per layer"
    else:
        attention = f"{shape.kv_heads} KV heads x {shape.head_dim}"
    for kind in ("full", "sliding", "chunked", "state"):
        n = sum(k == kind for k in kinds)
        if n:
            window = f" (window {shape.window})" if kind == "sliding" else ""
            attention += f"; {n} {kind}{window}"
    parts.append(f"attention {attention}")
    parts.append(f"quantization {shape.quant.detail}" if shape.quant else "not quantized")
    parts.append(f"weights from {shape.weights_source or shape.source}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Suggestion:
    """What would make a refused fit start, kept spare by a margin (a suggestion is followed as
    written): the largest max_model_len, the smallest gpu_memory_utilization."""

    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None


def predict(facts: Facts, shape: Shape) -> tuple[memory.Settings, memory.Fit]:
    s = default_settings(facts)
    return s, memory.fit(shape, s, facts.hardware.gpus[0].total_bytes)


def suggest(facts: Facts, shape: Shape, s: memory.Settings, f: memory.Fit) -> Suggestion:
    """Only for a fit that does not start: the margin is for what the model may miss, less where
    this host's own rehearsal calibrated it."""
    if f.fits_one_sequence and f.weights_bytes <= f.requested_bytes:
        return Suggestion()
    margin = CALIBRATED_MARGIN_BYTES if facts.calibration else SUGGESTION_MARGIN_BYTES
    safe = replace(s, overhead_bytes=s.overhead_bytes + margin)
    total = facts.hardware.gpus[0].total_bytes
    util = memory.utilization_for(shape, safe, total, s.max_model_len)
    if f.weights_bytes > f.requested_bytes:  # a low utilization is fixed by a higher one
        return Suggestion(gpu_memory_utilization=util)
    fits = memory.largest_max_model_len(memory.fit(shape, safe, total))
    return Suggestion(fits, util)


def check_memory(facts: Facts, report: Report) -> None:
    shape = facts.shape
    if shape is None:
        report.add(
            "memory fit",
            "warning",
            f"model shape of {facts.profile.model!r} unknown (no config.json locally, not in the "
            "built-in table): memory not checked",
            "point `model` at a local directory with config.json, or download it first",
        )
        return
    report.add("model", "ok", counted(shape))
    if shape.state_space:
        report.add(
            "memory fit",
            "refused",
            f"{shape.architecture or facts.profile.model} has state-space or linear-attention "
            "layers (Mamba, GatedDeltaNet): serve check does not model their per-request state",
            "`serve rehearse` measures the fit on the GPU",
        )
        return
    s, f = predict(facts, shape)
    report.fit, report.settings = f, s
    if s.max_model_len > shape.max_positions:
        report.add(
            "max_model_len",
            "refused",
            f"max_model_len: {s.max_model_len} exceeds the model's {shape.max_positions} "
            "positions (max_position_embeddings)",
            f"set max_model_len <= {shape.max_positions}",
        )
    tip = suggest(facts, shape, s, f)
    report.suggested_max_model_len = tip.max_model_len
    report.suggested_gpu_memory_utilization = tip.gpu_memory_utilization
    memory_verdict(facts, report, shape, s, f, tip)


def memory_verdict(
    facts: Facts, report: Report, shape: Shape, s: memory.Settings, f: memory.Fit,
    tip: Suggestion,
) -> None:  # fmt: skip
    """The weights, memory fit and concurrency lines, worded for a person."""
    gpu = facts.hardware.gpus[0]
    if f.weights_bytes > f.requested_bytes:
        more = "use more GPUs (tensor_parallel_size), a quantized model, or a bigger GPU"
        util = tip.gpu_memory_utilization
        report.add(
            "weights",
            "refused",
            f"weights need {_gib(f.weights_bytes)} per GPU; gpu_memory_utilization="
            f"{s.gpu_memory_utilization} of {gpu.name} gives {_gib(f.requested_bytes)}",
            f"set gpu_memory_utilization: {util}, or {more}" if util else more,
        )
        return
    lora = f"; LoRA slots {_gib(f.lora_bytes)}" if f.lora_bytes else ""
    report.add(
        "weights",
        "ok",
        f"{_gib(f.weights_bytes)} per GPU ({shape.params / 1e9:.2f}B params, {shape.source}){lora}",
    )
    if not f.fits_one_sequence:
        options = []
        if tip.max_model_len is not None:
            options.append(f"set max_model_len <= {tip.max_model_len}")
        if tip.gpu_memory_utilization is not None:
            options.append(f"set gpu_memory_utilization: {tip.gpu_memory_utilization}")
        report.add(
            "memory fit",
            "refused",
            f"one max_model_len={s.max_model_len} sequence needs {s.max_model_len:,} KV tokens; "
            f"{gpu.name} at gpu_memory_utilization={s.gpu_memory_utilization} leaves "
            f"{_gib(max(0, f.available_kv_bytes))} = {f.kv_cache_tokens:,} tokens",
            " or ".join(options) or "use a bigger GPU or more GPUs",
        )
        return
    calibrated = f"; {facts.calibration.note()}" if facts.calibration else ""
    report.add(
        "memory fit",
        "ok",
        f"KV cache {_gib(f.available_kv_bytes)} = {f.kv_cache_tokens:,} tokens; "
        f"{f.max_concurrency:.1f} sequences of max_model_len at once"
        f"{calibrated}{all_reduce_note(s)}",
    )
    typical = min(TYPICAL_SEQUENCE_TOKENS, s.max_model_len)
    if s.max_num_seqs * typical > f.kv_cache_tokens:
        at_once = f.kv_cache_tokens // typical
        report.add(
            "concurrency",
            "warning",
            f"max_num_seqs={s.max_num_seqs} sequences of {typical:,} tokens need "
            f"{s.max_num_seqs * typical:,} KV tokens; the cache holds {f.kv_cache_tokens:,} "
            f"(about {at_once} at once; the rest wait or are preempted)",
            f"set max_num_seqs: {max(1, at_once)} or give the cache more memory",
        )


def evaluate(facts: Facts) -> Report:
    """All rules, in the order a person would fix them."""
    report = Report()
    check_flags(facts, report)
    p = facts.profile
    for line in feature_lines(p.model_dump(), facts.features, facts.flagset, p.model_id):
        report.add(*line)
    for line in multinode_lines(p, facts.multinode, cpu_vllm=facts.cpu_vllm):
        report.add(*line)
    if facts.hardware.count == 0:
        why = "CPU vLLM" if facts.cpu_vllm else "NVML found none; pass --gpu NAME to plan for one"
        report.add(
            "GPU",
            "ok" if facts.cpu_vllm else "warning",
            f"skipped: no GPU ({why})",
            "" if facts.cpu_vllm else "run on the GPU host or pass --gpu NAME[:COUNT]",
        )
        check_port(facts, report)
        return report
    gpu = facts.hardware.gpus[0]
    report.add(
        "GPU",
        "ok",
        f"{facts.hardware.count} x {gpu.name}, {_gib(gpu.total_bytes)}, compute capability "
        f"{_cc(gpu.compute_capability)} ({facts.hardware.source})",
    )
    check_parallel(facts, report)
    check_dtype(facts, report)
    utilization = facts.profile.gpu_memory_utilization or memory.DEFAULT_GPU_MEMORY_UTILIZATION
    check_free_memory(facts, report, utilization)
    check_port(facts, report)
    check_memory(facts, report)
    return report
