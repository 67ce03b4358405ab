"""vLLM's KV-cache groups and its reported capacity, against the rules in vLLM 0.26's source
(v1/core/kv_cache_utils.py: _get_kv_cache_groups_uniform_page_size, get_kv_cache_capacity)."""

from __future__ import annotations

import math

from openai_server.preflight import kvcache
from openai_server.preflight.kvcache import Layers

GEMMA3_12B_LAYER = 2 * 8 * 256 * 2  # K and V, 8 KV heads of 256, bf16


def test_one_kind_reports_blocks_times_block_size():
    lay = kvcache.layout((Layers("full", 32, 1024),))
    assert lay.group_size == 32 and len(lay.groups) == 1
    available = 1000 * 32 * 1024 * 16 + 5
    cap = kvcache.capacity(lay, available, 4096, 16384)
    assert cap.num_blocks == 1000 and cap.tokens == 16_000
    assert cap.max_concurrency == 1000 / 256


def test_gemma3_groups_five_sliding_groups_and_one_full_of_eight_layers():
    lay = kvcache.layout(
        (Layers("full", 8, GEMMA3_12B_LAYER), Layers("sliding", 40, GEMMA3_12B_LAYER, 1024))
    )
    assert lay.group_size == 8
    assert [g.kind for g in lay.groups] == ["full"] + ["sliding"] * 5
    assert lay.bytes_per_block == 8 * 16 * GEMMA3_12B_LAYER


def test_sliding_layers_hold_the_window_plus_tokens_in_flight_plus_one_block():
    sliding = Layers("sliding", 1, 64, 1024)
    # min(1024 - 1 + 2 x 8192, 32768) tokens, in blocks of 16, plus one
    assert kvcache.blocks_per_request(sliding, 32768, 16384) == math.ceil(17407 / 16) + 1
    # never more than the whole sequence
    assert kvcache.blocks_per_request(sliding, 4096, 16384) == 256 + 1


def test_hybrid_capacity_is_concurrency_times_max_model_len():
    lay = kvcache.layout((Layers("full", 8, 100), Layers("sliding", 40, 100, 1024)))
    cap = kvcache.capacity(lay, 10**9, 32768, 16384)
    per_request = 2048 + 5 * (math.ceil(17407 / 16) + 1)
    assert cap.max_concurrency == cap.num_blocks / per_request
    assert cap.tokens == int(cap.num_blocks / per_request * 32768)
    # far more than the same memory would hold with every layer full
    all_full = kvcache.capacity(kvcache.layout((Layers("full", 48, 100),)), 10**9, 32768, 16384)
    assert cap.tokens > 1.5 * all_full.tokens


def test_near_equal_kinds_pad_the_smaller_to_the_larger():
    # vLLM's example: gpt-oss-20b + eagle, 12 sliding + 13 full -> groups of 13, one each
    lay = kvcache.layout((Layers("full", 13, 10), Layers("sliding", 12, 10, 128)))
    assert lay.group_size == 13 and len(lay.groups) == 2


def test_largest_model_len_is_the_longest_request_that_fits():
    lay = kvcache.layout((Layers("full", 8, 100), Layers("sliding", 40, 100, 1024)))
    available = kvcache.bytes_for(lay, 20000, 4096)
    best = kvcache.largest_model_len(lay, available, 4096, 131072)
    assert kvcache.bytes_for(lay, best, 4096) <= available
    assert kvcache.bytes_for(lay, best + 1, 4096) > available
    assert kvcache.largest_model_len(lay, 0, 4096, 131072) == 0
