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
from dataclasses import dataclass, replace

from . import kvcache, quantization
from .gpus import GiB
from .models import Shape

MiB = 1024**2
BLOCK_SIZE = kvcache.BLOCK_SIZE
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
# The mixture-of-experts architectures vLLM 0.26 runs on its V2 model runner, which takes no
# CUDA-graph estimate from the KV budget (v1/worker/gpu/model_runner.py, profile_cudagraph_memory
# returns 0) and samples with less memory (config/vllm.py, DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES:
# DeepSeek V3 is not among them). Dense models: see v1_runner.
V2_RUNNER_MOE_ARCHITECTURES = {"DeepseekV2ForCausalLM", "Qwen2MoeForCausalLM",
                               "GraniteMoeForCausalLM"}  # fmt: skip
# The V1 runner's sampler pass over max_num_seqs rows of fp32 logits (top-k and top-p: sorted
# values, int64 indices, probabilities), per logit. Measured on an H200 with vLLM 0.26.0 (dummy
# weights, 1024 sequences), vLLM's "Actual usage is ... GiB for peak activation": gpt-oss-20b
# 2.87 GiB with 8192 batched tokens (2026-12-02) and 2.84 GiB with 2048 (2026-12-03): the peak
# does not follow the batched tokens, 14.8-15.0 bytes per logit of 1024 x 201,088; Qwen3-30B-A3B
# 2.68 GiB with 8192: its fused-MoE workspaces, which stay allocated after the forward (0.53 GiB),
# and 14.8 bytes per logit of 1024 x 151,936. The larger is kept.
SAMPLER_BYTES_PER_LOGIT = 15.0
# A mixture-of-experts forward's peak, beyond the fused-MoE workspaces: hidden-sized tensors per
# token (input, residual, the experts' output, the shared experts' output) and a constant: on the
# V1 runner the logits of max_num_seqs rows in fp32, on the V2 runner the LM head's size.
# DeepSeek-V2-Lite (V2 runner, H200, vLLM 0.26.0) peaked at 1.09 GiB
# with 8192 batched tokens and 1.66 GiB with 16384: 73.0 KiB more per token, its workspaces'
# 61.0 KiB and 3 hidden-sized bf16 tensors; 4 are counted. With 4096 tokens and 256 sequences
# (held back, 2026-12-03) 0.81 GiB: the rest is constant, about its LM head's size (0.39 GiB),
# not the logits of max_num_seqs rows (predicted 0.86, 1.16 and 1.77 GiB). The dense fit's MLP
# term counted the routed experts' width a second time (2.33 GiB at 16384).
MOE_HIDDEN_PER_TOKEN = 4
LOGIT_BYTES = 4
MOE_GRAPH_PER_GRAPH_LAYER_BYTES = int(0.15 * MiB)


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
    hybrid_kv_cache: bool = True  # vLLM's hybrid KV-cache manager (off on its CPU build)
    # a multimodal checkpoint's vision encoder: vLLM skips it with --language-model-only
    serve_vision: bool = True


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
    kv_cache_tokens: int  # vLLM's "GPU KV cache size: N tokens"
    lora_bytes: int = 0
    max_concurrency: float = 0.0  # vLLM's "Maximum concurrency for max_model_len tokens"
    one_sequence_kv_bytes: int = 0  # what one max_model_len request needs: vLLM's start check
    largest_model_len: int = 0  # the largest max_model_len one request can have

    @property
    def fits_one_sequence(self) -> bool:
        return 0 < self.one_sequence_kv_bytes <= self.available_kv_bytes


def weights_bytes(shape: Shape, s: Settings) -> int:
    """Weight bytes on one GPU (vLLM's "Model loading took X GiB").

    From the checkpoint's safetensors headers where they were read (exact), else from the
    parameter counts by kind: linear layers and experts at the quantization's bits (the
    checkpoint's own quantization_config, else the profile's method applied at load), embeddings,
    LM head, routers and norms in the model's dtype. Tensor parallel splits all but routers and
    norms; experts are split the same way under expert parallel. vLLM's RoPE caches are added:
    they are allocated with the weights.
    """
    split = s.tensor_parallel_size * s.pipeline_parallel_size
    rope = shape.rope_cache * s.dtype_bytes  # buffers on every GPU, not split
    exact = shape.exact_weights
    if exact is not None:
        fp8 = s.quantization in quantization.AT_LOAD_BITS and shape.quant is None
        loaded = exact.loaded_bytes(tie_word_embeddings=shape.tied_embeddings,
                                    serve_vision=s.serve_vision, fp8_at_load=fp8)  # fmt: skip
        return int((loaded + mla_copies(shape) * s.dtype_bytes) / split + rope)
    p = shape.param_counts()
    d = s.dtype_bytes
    q = shape.quant or quantization.at_load(s.quantization)
    linear_bits = expert_bits = d * 8.0
    if q is not None:
        if not q.keeps("model.layers.0.self_attn.o_proj"):
            linear_bits = q.linear_bits
        if not q.keeps("model.layers.0.mlp.experts"):
            expert_bits = q.expert_bits
    parted = (p.linear * linear_bits / 8 + p.experts * expert_bits / 8
              + (p.embedding + p.lm_head + mla_copies(shape)) * d
              + (p.vision * d if s.serve_vision else 0))  # fmt: skip
    whole = p.replicated * d
    tp = s.tensor_parallel_size
    return int((parted / tp + whole) / s.pipeline_parallel_size + rope)


def mla_copies(shape: Shape) -> int:
    """MLA keeps bf16 copies of its up-projection (W_UK_T, W_UV, split from kv_b_proj) beside
    kv_b_proj itself (layers/attention/mla_attention.py, process_weights_after_loading)."""
    m = shape.mla
    if m is None:
        return 0
    return shape.layers * m.kv_lora_rank * shape.heads * (m.qk_nope_head_dim + m.v_head_dim)


def kv_layers(shape: Shape, s: Settings) -> tuple[kvcache.Layers, ...]:
    """The model's attention layers on one GPU, by kind, as vLLM specs their KV cache."""
    pp = s.pipeline_parallel_size
    if shape.mla is not None:  # one latent per layer, not split by tensor parallel
        per = shape.mla.latent * s.kv_bytes
        return (kvcache.Layers("mla", math.ceil(shape.layers / pp), per),)
    kv_heads = max(1, shape.kv_heads // s.tensor_parallel_size)
    per = 2 * kv_heads * shape.head_dim * s.kv_bytes
    kinds = shape.kinds or ("full",) * shape.layers
    # vLLM 0.26 turns its hybrid KV-cache manager off on CPU and for chunked local attention
    # (Llama 4), and then sizes sliding layers as full ones (unify_hybrid_kv_cache_specs)
    hybrid = s.hybrid_kv_cache and "chunked" not in kinds
    sliding = sum(k == "sliding" for k in kinds) if hybrid else 0
    full = len(kinds) - sliding - sum(k == "state" for k in kinds)
    return (
        kvcache.Layers("full", math.ceil(full / pp), per),
        kvcache.Layers("sliding", math.ceil(sliding / pp), per, shape.window),
    )


def kv_bytes_per_token(shape: Shape, s: Settings) -> int:
    """Per GPU, one token in every layer: 2 (K and V) x layers x KV heads x head_dim x bytes
    (docs/vllm-facts.md), or MLA's latent per layer.

    Tensor parallelism splits the KV heads (replicating them when there are fewer heads than
    GPUs); pipeline parallelism splits the layers.
    """
    return sum(k.count * k.bytes_per_token for k in kv_layers(shape, s))


def in_flight_tokens(s: Settings) -> int:
    """Tokens scheduled but not settled (VllmConfig.max_in_flight_tokens): async scheduling, on
    by default, keeps two batches in flight; pipeline parallel one per stage, plus one."""
    pp = s.pipeline_parallel_size
    return (2 if pp == 1 else pp + 1) * s.max_num_batched_tokens


def activation_bytes(shape: Shape, s: Settings) -> int:
    """Transient peak of vLLM's profiling pass (fitted): a forward pass over
    max_num_batched_tokens tokens, then a sampler pass over max_num_seqs rows of logits.

    A dense forward's peak grows with the MLP width (the fit above). A mixture-of-experts one
    with the fused-MoE kernel's workspaces and a few hidden-sized tensors per token: the experts'
    MLP runs inside those workspaces. The V1 model runner's sampler pass (top-k and top-p over
    max_num_seqs x vocab fp32 logits) is the larger peak for MoE models with large vocabularies,
    with the workspaces still allocated; the V2 runner's (Llama, Qwen2: the LM-head floor) is not.
    """
    tokens = s.max_num_batched_tokens
    tp = s.tensor_parallel_size
    lm_head = shape.vocab * shape.hidden * s.dtype_bytes / tp + LM_HEAD_EXTRA_BYTES
    workspaces = moe_workspace_bytes(shape, s)
    if shape.moe is None:
        per_token = (ACT_PER_TOKEN_INTERMEDIATE * shape.intermediate / tp
                     + ACT_PER_TOKEN_HIDDEN * shape.hidden)  # fmt: skip
        forward = ACT_BASE_BYTES + tokens * per_token * 2
    else:
        hidden = tokens * MOE_HIDDEN_PER_TOKEN * shape.hidden * s.dtype_bytes
        # the V2 runner's peak holds an LM-head-sized transient whatever max_num_seqs is
        # (DeepSeek-V2-Lite: 0.4 GiB at 256 and at 1024 sequences); the V1 runner's the logits
        logits = lm_head if not v1_runner(shape) else s.max_num_seqs * shape.vocab * LOGIT_BYTES
        forward = ACT_BASE_BYTES + workspaces + hidden + logits
    forward = max(forward, lm_head)
    if not v1_runner(shape):
        return int(forward)
    held = workspaces if moe_workspaces_held(shape) else 0
    return int(max(forward, held + SAMPLER_BYTES_PER_LOGIT * s.max_num_seqs * shape.vocab))


def moe_workspaces_held(shape: Shape) -> bool:
    """Whether the fused-MoE workspaces are still allocated at the sampler pass: Triton's
    (bf16, fp8) are cached for the next forward; gpt-oss's MXFP4 experts run in other kernels,
    whose peak did not follow the batched tokens (2.87 GiB at 8192, 2.84 at 2048)."""
    return shape.moe is not None and not (shape.quant is not None and shape.quant.method == "mxfp4")


def moe_workspace_bytes(shape: Shape, s: Settings) -> int:
    """The fused-MoE kernel's buffers for one pass over max_num_batched_tokens: two
    (tokens, top-k, max(width, hidden)) workspaces (width: the expert's intermediate size, then
    gate and up together) and a (tokens, hidden) output (vLLM's fused_moe TritonExperts
    .workspace_shapes). DeepSeek-V2-Lite on an H200 (vLLM 0.26.0, V2 runner, 8192 batched
    tokens) peaked 0.34 GiB above the dense fit; these buffers are 0.48 GiB."""
    if shape.moe is None:
        return 0
    m = shape.moe
    width = m.intermediate // s.tensor_parallel_size
    per_token = m.active * (max(width, shape.hidden) + max(2 * width, shape.hidden)) + shape.hidden
    return s.max_num_batched_tokens * per_token * s.dtype_bytes


def v1_runner(shape: Shape) -> bool:
    """Whether vLLM 0.26 runs this model on its V1 model runner, which takes a CUDA-graph
    estimate off the KV budget and samples with more memory. Its source makes the V2 runner the
    default for generative models that are not mixture-of-experts, and for the MoE ones it lists
    (config/vllm.py: _is_default_v2_model_runner_model, DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES);
    runs agree for Llama, Qwen2, Mistral and Gemma 2 (no estimate taken) and for Qwen3-MoE and
    gpt-oss (taken). The Phi-3 runs took it, against the source: Phi-3 is kept on V1."""
    if shape.moe is not None:
        return shape.architecture not in V2_RUNNER_MOE_ARCHITECTURES
    return shape.architecture.startswith("Phi3") or not shape.architecture


def largest_capture(shape: Shape, s: Settings) -> int:
    """vLLM's largest CUDA-graph batch: 2 x max_num_seqs up to 512 (config/vllm.py), 1024 for
    gpt-oss (models/config.py raises it), never above max_num_batched_tokens."""
    cap = 1024 if shape.architecture == "GptOssForCausalLM" else min(2 * s.max_num_seqs, 512)
    return min(cap, s.max_num_batched_tokens)


def cuda_graph_bytes(shape: Shape, s: Settings) -> int:
    """vLLM's own CUDA-graph estimate that it takes from the KV budget (0 where it does not).

    Dense models: fitted to the Phi-3 runs (per graph, plus the first capture). Mixture-of-
    experts models capture every batch size twice (FULL and PIECEWISE graphs) and their
    estimate grows with the layers: 0.15 MiB per graph and layer (vLLM 0.26 on an H200:
    Qwen3-30B-A3B 0.64 GiB for 2 x 51 graphs of 48 layers, gpt-oss-20b 0.58 GiB for 2 x 83 of
    24; 0.131 and 0.146 MiB, the larger kept with a margin).
    """
    if s.enforce_eager or not v1_runner(shape):
        return 0
    sizes = capture_sizes(largest_capture(shape, s))
    if not sizes:
        return 0
    if shape.moe is not None:
        layers = math.ceil(shape.layers / s.pipeline_parallel_size)
        return int(2 * len(sizes) * layers * MOE_GRAPH_PER_GRAPH_LAYER_BYTES)
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
    non_torch = NON_TORCH_EAGER_BYTES if s.enforce_eager else NON_TORCH_BYTES
    if s.tensor_parallel_size * s.pipeline_parallel_size > 1:
        if s.fused_all_reduce:
            non_torch = max(non_torch, NON_TORCH_FUSED_ALL_REDUCE_BYTES)
        elif not s.enforce_eager:  # eager with tensor parallel not measured: one GPU's, the larger
            non_torch = NON_TORCH_PARALLEL_BYTES
    lora = lora_bytes(shape, s)
    non_torch += UNSEEN_BYTES
    available = requested - weights - lora - non_torch - act - graphs - s.overhead_bytes
    lay = kvcache.layout(kv_layers(shape, s))
    flight = in_flight_tokens(s)
    cap = kvcache.capacity(lay, available, s.max_model_len, flight)
    return Fit(
        total_bytes=total_bytes,
        requested_bytes=requested,
        weights_bytes=weights,
        non_torch_bytes=non_torch,
        activation_bytes=act,
        cuda_graph_bytes=graphs,
        kv_bytes_per_token=kv_bytes_per_token(shape, s),
        available_kv_bytes=available,
        kv_cache_tokens=cap.tokens,
        lora_bytes=lora,
        max_concurrency=cap.max_concurrency,
        one_sequence_kv_bytes=kvcache.bytes_for(lay, s.max_model_len, flight),
        largest_model_len=kvcache.largest_model_len(
            lay, max(0, available), flight, max(s.max_model_len, shape.max_positions)
        ),
    )


# vLLM's CPU attention takes KV blocks in multiples of 32 (v1/attention/backends/cpu_attn.py,
# get_supported_kernel_block_sizes), so the platform picks 32 over the default 16
CPU_BLOCK_SIZE = 32


def cpu_kv_cache(shape: Shape, s: Settings, space_bytes: int) -> kvcache.Capacity:
    """The KV cache of vLLM's CPU build where VLLM_CPU_KVCACHE_SPACE sizes it (GiB, as
    kv_cache_memory_bytes: platforms/cpu.py): that many bytes, every layer full attention (the
    hybrid KV-cache manager is off on CPU), one batch in flight (no async scheduling there)."""
    lay = kvcache.layout(kv_layers(shape, replace(s, hybrid_kv_cache=False)), CPU_BLOCK_SIZE)
    return kvcache.capacity(lay, space_bytes, s.max_model_len, s.max_num_batched_tokens,
                            CPU_BLOCK_SIZE)  # fmt: skip


def largest_max_model_len(f: Fit) -> int | None:
    """The largest max_model_len one sequence can have in this KV cache; None if not one block
    (vLLM's estimate_max_model_len: its binary search over what one request needs)."""
    return f.largest_model_len if f.largest_model_len >= kvcache.BLOCK_SIZE else None


def utilization_for(shape: Shape, s: Settings, total_bytes: int, tokens: int) -> float | None:
    """The smallest gpu_memory_utilization (2 decimals) giving at least `tokens` KV tokens."""
    for hundredths in range(10, 99):
        util = hundredths / 100
        trial = Settings(**{**s.__dict__, "gpu_memory_utilization": util})
        if fit(shape, trial, total_bytes).kv_cache_tokens >= tokens:
            return util
    return None
