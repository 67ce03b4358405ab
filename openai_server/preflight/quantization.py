"""What a checkpoint's `quantization_config` (or a profile's `quantization` at load) does to the
bytes of its weights. Pure: a config mapping in, bits per weight out.

vLLM quantizes linear layers only: embeddings, the LM head, norms and (in every MoE family here)
the router stay in the activation dtype, and `modules_to_not_convert` / `ignore` /
`ignored_layers` keep more in it (gpt-oss keeps attention, router, embeddings and LM head in bf16
and its experts in MXFP4). Bits include the scales each format stores beside its weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Methods vLLM applies to a bf16 checkpoint as it loads it (`--quantization fp8` and the like),
# with their bits per linear weight. fp8's per-tensor or 128x128 block scales are < 0.01 bit.
AT_LOAD_BITS = {"fp8": 8.0, "experts_int8": 8.0, "ptpc_fp8": 8.0, "fbgemm_fp8": 8.0}
# vLLM's names for the methods a checkpoint carries in quantization_config.quant_method (plus the
# *_marlin kernels vLLM picks for them), for a table entry whose method is all we know
MXFP4_LOADED_BITS = 4.36
DEFAULT_BITS = {
    "awq": 4.0 + 2.5 / 128,
    "awq_marlin": 4.0 + 2.5 / 128,
    "gptq": 4.0 + 2.5 / 128,
    "gptq_marlin": 4.0 + 2.5 / 128,
    "moe_wna16": 4.0 + 2.5 / 128,
    "fp8": 8.0,
    "modelopt": 8.0,
    "mxfp4": MXFP4_LOADED_BITS,
    "modelopt_fp4": 4.5,
    "bitsandbytes": 4.5,
}


@dataclass(frozen=True)
class Quant:
    method: str
    linear_bits: float  # attention and dense MLP linears
    expert_bits: float  # routed experts
    keep: tuple[str, ...] = ()  # module name patterns left in the activation dtype
    detail: str = ""  # what `serve check` says it read

    def keeps(self, module: str) -> bool:
        return any(_matches(p, module) for p in self.keep)


def _matches(pattern: str, module: str) -> bool:
    """HF-style: a regex ("re:..."), a glob with `*`, or a name that occurs in the module's."""
    if pattern.startswith("re:"):
        return re.search(pattern[3:], module) is not None
    if "*" in pattern:  # a module and everything under it ("model.layers.*.self_attn")
        glob = pattern.replace(".", r"\.").replace("*", "[^.]*")
        return re.fullmatch(glob + r"(\..*)?", module) is not None
    return pattern in module


def _group_bits(bits: float, group: int | None, zero_point: bool, scale_bits: int = 16) -> float:
    """Weight bits plus one scale (and a packed zero point) per group of input columns."""
    if not group or group <= 0:  # per channel: one scale per output row, negligible
        return bits
    return bits + (scale_bits + (bits if zero_point else 0)) / group


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(str(v) for v in value)
    return ()


def from_config(qc: Mapping[str, Any]) -> Quant | None:
    """A checkpoint's quantization_config -> Quant; None when it names no method we know."""
    method = str(qc.get("quant_method") or qc.get("quant_algo") or "").lower()
    keep = _names(qc.get("modules_to_not_convert")) + _names(qc.get("ignored_layers"))
    keep += _names(qc.get("ignore")) + _names(qc.get("llm_int8_skip_modules"))
    if method in ("awq", "gptq", "awq_marlin", "gptq_marlin"):
        bits = float(qc.get("bits") or qc.get("w_bit") or 4)
        group = int(qc.get("group_size") or qc.get("q_group_size") or 128)
        zero = method.startswith("awq") or not qc.get("sym", True)
        b = _group_bits(bits, group, zero)
        return Quant(method, b, b, keep, f"{method} {bits:g}-bit, group {group}")
    if method == "fp8":
        block = qc.get("weight_block_size")
        how = f"block-wise {block[0]}x{block[1]}" if block else "per-tensor"
        return Quant("fp8", 8.0, 8.0, keep, f"fp8 ({how} scales)")
    if method == "mxfp4":
        # 4 bits + one e8m0 scale per 32 is 4.25; vLLM 0.26's MoE kernel layout on an H200 held
        # gpt-oss-20b's experts in 4.352 bits per weight ("Model loading took 13.03 GiB")
        return Quant("mxfp4", MXFP4_LOADED_BITS, MXFP4_LOADED_BITS, keep,
                     "mxfp4 (4-bit, one e8m0 scale per 32)")  # fmt: skip
    if method == "bitsandbytes":
        if qc.get("load_in_8bit"):
            return Quant(method, 8.0, 8.0, keep, "bitsandbytes 8-bit")
        # 4-bit with one fp32 absmax per 64 weights (double quantization makes it ~8 bits / 256)
        b = 4.0 + (8 / 256 if qc.get("bnb_4bit_use_double_quant") else 32 / 64)
        return Quant(method, b, b, keep, "bitsandbytes 4-bit")
    if method in ("modelopt", "nvfp4", "fp8_pb_wo") or "quant_algo" in qc:
        algo = str(qc.get("quant_algo") or method).upper()
        if "FP4" in algo:  # one fp8 scale per 16 weights
            return Quant("modelopt_fp4", 4.5, 4.5, keep, "modelopt NVFP4")
        return Quant("modelopt", 8.0, 8.0, keep, f"modelopt {algo}")
    if method == "compressed-tensors":
        return _compressed_tensors(qc, keep)
    if method in DEFAULT_BITS:
        b = DEFAULT_BITS[method]
        return Quant(method, b, b, keep, method)
    return None


def _compressed_tensors(qc: Mapping[str, Any], keep: tuple[str, ...]) -> Quant | None:
    groups = qc.get("config_groups") or {}
    found: list[float] = []
    for group in groups.values() if isinstance(groups, Mapping) else ():
        w = (group or {}).get("weights") or {}
        bits = float(w.get("num_bits") or 8)
        strategy = str(w.get("strategy") or "tensor")
        size = int(w.get("group_size") or 0) if strategy in ("group", "tensor_group") else 0
        scale_bits = 8 if w.get("type") == "float" and bits == 4 else 16  # NVFP4: fp8 scales
        found.append(_group_bits(bits, size, not w.get("symmetric", True), scale_bits))
    if not found:
        return None
    b = max(found)  # several groups: the widest, on the safe side
    return Quant("compressed-tensors", b, b, keep, f"compressed-tensors {b:.2f} bits per weight")


def at_load(method: str | None) -> Quant | None:
    """A profile's `quantization` for a bf16 checkpoint (vLLM quantizes as it loads)."""
    if method in AT_LOAD_BITS:
        bits = AT_LOAD_BITS[method]
        experts = bits if method != "experts_int8" else 8.0
        linear = bits if method != "experts_int8" else 16.0
        return Quant(method, linear, experts, (), f"{method} at load")
    if method in DEFAULT_BITS:
        b = DEFAULT_BITS[method]
        return Quant(method, b, b, (), method)
    return None
