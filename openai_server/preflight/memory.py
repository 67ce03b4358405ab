"""How vLLM will size its KV cache, predicted without a GPU. Pure arithmetic: no I/O.

vLLM (V1 engine, 0.2x-0.3x; `Worker.determine_available_memory`) computes

    available_kv = ceil(total x gpu_memory_utilization)
                   - consumed      (weights + buffers + non-torch growth, from mem_get_info)
                   - transient     (activation peak of a profiling pass over max_num_batched_tokens
                                    tokens and a sampler pass over max_num_seqs rows)
                   - cuda_graphs   (its own estimate, on the V1 model runner; 0 with enforce_eager)

then `num_blocks = available_kv // (block_size x per-token KV bytes)` and reports
`num_blocks x block_size` tokens ("GPU KV cache size: N tokens"). `total` is torch's view of the
card, not nvidia-smi's. The overhead terms are modelled from measurements (table below); the rest
is vLLM's own arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .gpus import GiB
from .models import Shape

MiB = 1024**2
BLOCK_SIZE = 16  # vLLM's default KV block size on CUDA
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's, where a profile sets none

BYTES_PER_ELEMENT = {
    "half": 2,
    "float16": 2,
    "bfloat16": 2,
    "float": 4,
    "float32": 4,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}
# Bits per weight of the linear layers for each quantization method; embeddings, lm_head and norms
# stay in the activation dtype. Group-quantized 4-bit formats carry ~0.25 bit of scales/zeros.
QUANT_BITS = {
    "awq": 4.25,
    "awq_marlin": 4.25,
    "gptq": 4.25,
    "gptq_marlin": 4.25,
    "moe_wna16": 4.25,
    "fp8": 8.0,
    "modelopt": 8.0,
    "experts_int8": 8.0,
    "mxfp4": 4.25,
    "modelopt_fp4": 4.5,
}

# ---- overhead model, fitted to vLLM 0.26.0's own DEBUG breakdown ("torch peak memory increase",
# "non-torch forward increase memory", "Estimated CUDA graph memory") on an H200 (139.80 GiB):
#   shape        batched seqs  eager  peak  non-torch  graphs  |  KV tokens (vLLM)
#   phi3-mini    8192   1024   no     0.61  0.23       0.29    |  321,552 (util .90)
#   phi3-mini    8192   1024   yes    0.55  0.16       -       |  284,528 (util .80)
#   phi3-mini    2048   128    no     0.22  0.23       0.19    |  246,544 (util .70)
#   llama3-8b    8192   1024   no     1.10  0.22       -       |  897,280 (util .90)
#   llama3-8b    16384  1024   no     1.78  0.22       -       |  949,024 (util .95)
#   qwen2.5-0.5b 8192   1024   no     0.35  0.22       -       |  5,976,320 (util .50)
# and, predicted before being run (then used for the LM-head floor below):
#   phi3-mini    4096   256    no     0.35  0.23       0.29    |  303,168 (util .85; predicted
#                                                                 302,624, -0.18%)
#   llama3-8b    4096   64     no     1.04  0.22       -       |  874,896 (util .88; predicted
#                                                                 879,008, +0.47%)
# The activation peak is a least-squares fit over batched tokens x (intermediate, hidden), with a
# floor of one LM-head-sized transient (Llama-3-8B peaks at 1.04 GiB with 4096 batched tokens: its
# LM head is 0.98 GiB): within 0.13 GiB on every row. CUDA graphs: vLLM 0.26 subtracts its graph
# estimate only on the V1 model runner (Phi-3 here); Llama and Qwen2 run on the "V2 Model Runner",
# which does not.
ACT_PER_TOKEN_INTERMEDIATE = 3.267  # x batched tokens x intermediate_size x 2 bytes
ACT_PER_TOKEN_HIDDEN = 2.314  # x batched tokens x hidden_size x 2 bytes
ACT_BASE_BYTES = int(0.112 * GiB)
LM_HEAD_EXTRA_BYTES = int(0.06 * GiB)
NON_TORCH_BYTES = int(0.225 * GiB)  # cuBLAS/NCCL/attention workspaces after vLLM's first snapshot
# eager: 0.16 GiB on an H200 (Phi-3 shape), 0.22 GiB on an H100 (Qwen2.5-7B shape, vLLM's own
# "Actual usage is ... 0.22 GiB for non-torch memory"): the larger is kept
NON_TORCH_EAGER_BYTES = int(0.22 * GiB)
# With tensor or pipeline parallel it depends on vLLM's fused all-reduce + RMSNorm pass (on by
# default on Hopper), whose FlashInfer all-reduce workspace (compilation/passes/fusion/
# allreduce_rms_fusion.py, sized by max tokens x hidden size) is allocated outside torch:
# measured 1.05 GiB per GPU with it (two H200s, vLLM 0.26.0, Llama-3.3-70B shape, tensor parallel
# 2, utilization 0.92, a run made before multicast.py turned the fusion off: 0.22 GiB had
# predicted 1.61% more KV tokens than vLLM gave), and 0.07 GiB
# with it off (`fuse_allreduce_rms: false`, what multicast.py renders where NVLink multicast is
# off: the same shape and Qwen2.5-32B, tensor parallel 2, vLLM's own "0.07 GiB for non-torch
# memory", two H200s, 2026-11-27).
NON_TORCH_FUSED_ALL_REDUCE_BYTES = int(1.05 * GiB)
NON_TORCH_PARALLEL_BYTES = int(0.07 * GiB)
# What vLLM takes beyond the fitted terms, kept so that the prediction never promises more KV than
# vLLM gives. Seen: on an H200 vLLM's overhead for one profile (Llama-3.1-8B shape) was 16.10 GiB
# at utilization 0.90 and 16.34 GiB at 0.22, and differed by 0.23 GiB between two fresh machines;
# on an H100 (nine rehearsals, vLLM 0.26.0, 2026-11-27) the fitted terms missed up to 0.18 GiB:
# FP8 weights quantized at load took 0.08 GiB more than their bytes and 0.09 GiB more transient
# memory; a Qwen2.5-14B shape 0.16 GiB in all. A quarter GiB covers every one; on the 40-60 GiB
# caches of an 80 GB card it is 0.4-0.6% (serve rehearse measures the rest, calibration.py).
UNSEEN_BYTES = GiB // 4
GRAPH_FIRST_BASE_BYTES = 16 * MiB  # first capture: 16 MiB + 0.15625 MiB per token of the largest
GRAPH_FIRST_PER_SIZE_BYTES = int(0.15625 * MiB)
GRAPH_PER_GRAPH_BYTES = 4 * MiB
# Architectures whose KV budget vLLM 0.26 does not reduce by a CUDA-graph estimate. Its worker
# (v1/worker/gpu_worker.py, determine_available_memory) subtracts the model runner's estimate;
# the V2 runner, the default for dense non-hybrid generative models there
# (config/vllm.py, _is_default_v2_model_runner_model), gives none
# (v1/worker/gpu/model_runner.py, profile_cudagraph_memory returns 0; "0.0 GiB for CUDAGraph
# memory" in the log). Seen on an H100: Llama, Qwen2, Mistral, Gemma 2. The Phi-3 runs on an
# H200 took the V1 runner's estimate off, so an architecture not seen keeps it: the safe side.
V2_RUNNER_ARCHITECTURES = {
    "LlamaForCausalLM",
    "Qwen2ForCausalLM",
    "MistralForCausalLM",
    "Gemma2ForCausalLM",
}


@dataclass(frozen=True)
class Settings:
    """The profile values the fit depends on (vLLM defaults already applied)."""

    dtype_bytes: int
    kv_bytes: int
    quantization: str | None
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    enforce_eager: bool
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    max_loras: int = 0  # 0: LoRA off
    max_lora_rank: int = 16
    overhead_bytes: int = 0  # a measured correction (calibration.py) or a safety margin
    fused_all_reduce: bool = True  # vLLM's fused all-reduce + RMSNorm (multicast.fuses_all_reduce)


@dataclass(frozen=True)
class Fit:
    total_bytes: int
    requested_bytes: int
    weights_bytes: int
    non_torch_bytes: int
    activation_bytes: int
    cuda_graph_bytes: int
    kv_bytes_per_token: int
    available_kv_bytes: int
    kv_cache_tokens: int
    lora_bytes: int = 0

    def max_concurrency(self, tokens_per_sequence: int) -> float:
        return self.kv_cache_tokens / tokens_per_sequence if tokens_per_sequence else 0.0


def weights_bytes(shape: Shape, s: Settings) -> int:
    """Weight bytes on one GPU (vLLM's "Model loading took X GiB")."""
    embed_params = shape.vocab * shape.hidden * (1 if shape.tied_embeddings else 2)
    linear_params = max(0, shape.params - embed_params)
    bits = QUANT_BITS.get(s.quantization or "", s.dtype_bytes * 8.0)
    total = linear_params * bits / 8 + embed_params * s.dtype_bytes
    return int(total / (s.tensor_parallel_size * s.pipeline_parallel_size))


def kv_bytes_per_token(shape: Shape, s: Settings) -> int:
    """Per GPU: 2 (K and V) x layers x KV heads x head_dim x bytes (docs/vllm-facts.md).

    Tensor parallelism splits the KV heads (replicating them when there are fewer heads than
    GPUs); pipeline parallelism splits the layers.
    """
    kv_heads = max(1, shape.kv_heads // s.tensor_parallel_size)
    layers = math.ceil(shape.layers / s.pipeline_parallel_size)
    return 2 * layers * kv_heads * shape.head_dim * s.kv_bytes


def activation_bytes(shape: Shape, s: Settings) -> int:
    """Transient peak of vLLM's profiling pass over max_num_batched_tokens tokens (fitted)."""
    tokens = s.max_num_batched_tokens
    inter = shape.intermediate / s.tensor_parallel_size
    per_token = ACT_PER_TOKEN_INTERMEDIATE * inter + ACT_PER_TOKEN_HIDDEN * shape.hidden
    lm_head = shape.vocab * shape.hidden * s.dtype_bytes / s.tensor_parallel_size
    return int(max(ACT_BASE_BYTES + tokens * per_token * 2, lm_head + LM_HEAD_EXTRA_BYTES))


def cuda_graph_bytes(shape: Shape, s: Settings) -> int:
    """vLLM's own CUDA-graph estimate that it takes from the KV budget (0 where it does not)."""
    if s.enforce_eager or shape.architecture in V2_RUNNER_ARCHITECTURES:
        return 0
    sizes = capture_sizes(min(2 * s.max_num_seqs, s.max_num_batched_tokens, 512))
    if not sizes:
        return 0
    first = GRAPH_FIRST_BASE_BYTES + sizes[-1] * GRAPH_FIRST_PER_SIZE_BYTES
    return first + (len(sizes) - 1) * GRAPH_PER_GRAPH_BYTES


def lora_bytes(shape: Shape, s: Settings) -> int:
    """The LoRA slots vLLM allocates up front on one GPU: for every linear layer of every layer,
    max_loras x max_lora_rank x (A's input + B's output features), in the model's dtype. Fused
    modules hold one A per slice (qkv: 3, gate_up: 2); tensor parallel splits B of the column-
    parallel layers and A of the row-parallel ones (vllm/lora/layers: lora_a_stacked,
    lora_b_stacked)."""
    if not s.max_loras:
        return 0
    tp = s.tensor_parallel_size
    h, q, kv = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    a = 3 * h + q / tp + 2 * h + shape.intermediate / tp  # qkv, o, gate_up, down
    b = (q + 2 * kv) / tp + h + 2 * shape.intermediate / tp + h
    layers = math.ceil(shape.layers / s.pipeline_parallel_size)
    return int(s.max_loras * s.max_lora_rank * (a + b) * layers * s.dtype_bytes)


def capture_sizes(largest: int) -> list[int]:
    """vLLM's default CUDA-graph batch sizes: 1, 2, 4, steps of 8 to 256, then 16, up to largest."""
    sizes = [s for s in (1, 2, 4) if s <= largest]
    sizes += list(range(8, min(largest, 256) + 1, 8))
    sizes += list(range(272, largest + 1, 16))
    return sizes


def fit(shape: Shape, s: Settings, total_bytes: int) -> Fit:
    """vLLM's KV-cache sizing for one GPU of `total_bytes` (torch's view)."""
    requested = math.ceil(total_bytes * s.gpu_memory_utilization)
    weights = weights_bytes(shape, s)
    act = activation_bytes(shape, s)
    graphs = cuda_graph_bytes(shape, s)
    per_token = kv_bytes_per_token(shape, s)
    non_torch = NON_TORCH_EAGER_BYTES if s.enforce_eager else NON_TORCH_BYTES
    if s.tensor_parallel_size * s.pipeline_parallel_size > 1:
        if s.fused_all_reduce:
            non_torch = max(non_torch, NON_TORCH_FUSED_ALL_REDUCE_BYTES)
        elif not s.enforce_eager:  # eager with tensor parallel not measured: one GPU's, the larger
            non_torch = NON_TORCH_PARALLEL_BYTES
    lora = lora_bytes(shape, s)
    non_torch += UNSEEN_BYTES
    available = requested - weights - lora - non_torch - act - graphs - s.overhead_bytes
    blocks = max(0, available) // (per_token * BLOCK_SIZE)
    return Fit(
        total_bytes=total_bytes,
        requested_bytes=requested,
        weights_bytes=weights,
        non_torch_bytes=non_torch,
        activation_bytes=act,
        cuda_graph_bytes=graphs,
        kv_bytes_per_token=per_token,
        available_kv_bytes=available,
        kv_cache_tokens=blocks * BLOCK_SIZE,
        lora_bytes=lora,
    )


def largest_max_model_len(f: Fit) -> int | None:
    """The largest max_model_len one sequence can have in this KV cache; None if not one block.

    vLLM's own estimate in its refusal (v1/core/kv_cache_utils.py, estimate_max_model_len) is
    the largest length whose ceil(length / block_size) blocks fit the available KV memory, which
    is every whole block: kv_cache_tokens. It gives no estimate when that is 0.
    """
    return f.kv_cache_tokens if f.kv_cache_tokens >= BLOCK_SIZE else None


def utilization_for(shape: Shape, s: Settings, total_bytes: int, tokens: int) -> float | None:
    """The smallest gpu_memory_utilization (2 decimals) giving at least `tokens` KV tokens."""
    for hundredths in range(10, 99):
        util = hundredths / 100
        trial = Settings(**{**s.__dict__, "gpu_memory_utilization": util})
        if fit(shape, trial, total_bytes).kv_cache_tokens >= tokens:
            return util
    return None
