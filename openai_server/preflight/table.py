"""The shape table: the config.json fields that size a model's weights and KV cache, for
checkpoints people deploy, copied from each repository's own config.json (values, not guesses),
with the checkpoint's parameter count where its model card / safetensors metadata gives one.

Every entry names where its numbers were confirmed. This machine has no network, so "confirmed"
means: a verbatim (or field-for-field) copy of that repository's config.json found in a public
source repository, issue or page, cross-checked against a second source where one was found.
A value marked ``# unconfirmed: ...`` is the best available one but was NOT seen in a copy of
the file itself; judge it before relying on it.

Sparse files: some repositories ship a config.json that names only what differs from the
transformers config class (Gemma 3's multimodal ``text_config`` leaves out heads, KV heads,
head_dim, vocab_size and max_position_embeddings). Those entries stay faithful to the file; the
class defaults that fill the gaps are in ``architecture.CLASS_DEFAULTS`` (keyed by the sub-config's
``model_type``), as transformers and vLLM apply them.
"""

from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------------------------------------
# Shared shapes (families whose repositories ship the same config.json shape)
# ---------------------------------------------------------------------------------------------

# Qwen/Qwen3-30B-A3B -- verbatim copies: citsjtu2020/LLM-Prof sglang/Model_Config.md and
# alibaba/InferSim hf_configs/qwen3-30B-A3B_config.json (identical); 30.5B total / 3.3B active.
_QWEN3_30B_A3B: dict[str, Any] = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "max_position_embeddings": 40960,
    "max_window_layers": 48,
    "sliding_window": None,
    "use_sliding_window": False,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 151936,
}

# Qwen/Qwen3-235B-A22B -- HARD_CODED_CONFIGS["Qwen/Qwen3-235B-A22B"] in a public test helper
# (found via the code index) and the same shape in THUDM/slime scripts/models/qwen3-235B-A22B.sh
# (94 layers, 64/4 heads, hidden 4096, ffn 12288, moe 1536, 128 experts top-8, vocab 151936).
_QWEN3_235B_A22B: dict[str, Any] = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "moe_intermediate_size": 1536,
    "num_hidden_layers": 94,
    "num_attention_heads": 64,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "max_position_embeddings": 40960,
    "max_window_layers": 94,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 151936,
}

# openai/gpt-oss-20b and -120b -- AI-Hypercomputer/maxtext
# src/maxtext/checkpoint_conversion/utils/hf_model_configs.py (copied "from
# https://huggingface.co/openai/gpt-oss-{20b,120b}/blob/main/config.json", quantization_config
# dropped there) and a verbatim copy of the 20b file in jihengzhang/jihz-gpt-oss-20b
# gpt-oss-20b/config.json. The quantization_config below is quoted for BOTH repositories in a
# public write-up (found via the code index) and described the same way in EchoCog/gpt-oss-20b
# docs/gpt-oss-20b-architecture.md. The files carry no torch_dtype key (non-expert weights are
# bf16). Alternating sliding(128)/full attention, even layers sliding.
_GPT_OSS_MXFP4: dict[str, Any] = {
    "modules_to_not_convert": [
        "model.layers.*.self_attn",
        "model.layers.*.mlp.router",
        "model.embed_tokens",
        "lm_head",
    ],
    "quant_method": "mxfp4",
}
_GPT_OSS_COMMON: dict[str, Any] = {
    "architectures": ["GptOssForCausalLM"],
    "model_type": "gpt_oss",
    "hidden_size": 2880,
    "intermediate_size": 2880,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "num_experts_per_tok": 4,
    "experts_per_token": 4,
    "sliding_window": 128,
    "max_position_embeddings": 131072,
    "initial_context_length": 4096,
    "rope_scaling": {
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "factor": 32.0,
        "original_max_position_embeddings": 4096,
        "rope_type": "yarn",
        "truncate": False,
    },
    "tie_word_embeddings": False,
    "vocab_size": 201088,
    "quantization_config": _GPT_OSS_MXFP4,
}

# deepseek-ai/DeepSeek-V3 -- maxtext hf_model_configs.py ("from
# https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json", quantization_config
# removed there) and alibaba/InferSim hf_configs/deepseek_v3_config.json (same values, with the
# quantization_config; that copy renames n_routed_experts/n_shared_experts, so names follow
# maxtext). fp8 block-wise quantization_config also confirmed by deepseek-ai/DeepSeek-V3
# README_WEIGHTS.md; dims also by its inference/configs/config_671B.json (61 layers, 3 dense,
# 256 routed + 1 shared, top-8, q_lora 1536, kv_lora 512, rope 64, nope 128, v 128, vocab 129280).
# Layer 61 (num_nextn_predict_layers) is the MTP module, loaded only for speculative decoding.
_DEEPSEEK_V3: dict[str, Any] = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "num_nextn_predict_layers": 1,
    "kv_lora_rank": 512,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "max_position_embeddings": 163840,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 129280,
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    },
}

# deepseek-ai/DeepSeek-V2-Lite -- maxtext hf_model_configs.py ("from
# https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json"; maxtext adds a
# rope_theta key inside rope_scaling, left out here) and deepseek-ai/DeepSeek-V3
# inference/configs/config_16B.json (27 layers, 1 dense, 64 routed + 2 shared, top-6,
# q_lora 0 = none, kv_lora 512, vocab 102400). 15.7B total / 2.4B active.
_DEEPSEEK_V2_LITE: dict[str, Any] = {
    "architectures": ["DeepseekV2ForCausalLM"],
    "model_type": "deepseek_v2",
    "hidden_size": 2048,
    "intermediate_size": 10944,
    "moe_intermediate_size": 1408,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_experts_per_tok": 6,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
    "kv_lora_rank": 512,
    "q_lora_rank": None,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "max_position_embeddings": 163840,
    "rope_scaling": {
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "factor": 40.0,
        "mscale": 0.707,
        "mscale_all_dim": 0.707,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 102400,
}

# Gemma 3 vision tower (SigLIP), identical in the 4b/12b/27b files -- maxtext hf_model_configs.py
# and NVIDIA TensorRT-LLM's Gemma 3 test (GEMMA3_27B_CONFIG) and a copy "Source:
# google/gemma-3-12b-it config.json" (all found via the code index).
_GEMMA3_SIGLIP: dict[str, Any] = {
    "model_type": "siglip_vision_model",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_attention_heads": 16,
    "num_hidden_layers": 27,
    "patch_size": 14,
    "image_size": 896,
    "vision_use_head": False,
}

# Llama 4 vision tower, identical for Scout and Maverick -- TensorRT-LLM's
# LLAMA_4_MAVERICK_TWO_LAYER_CONFIG (vision layers zeroed there; 34 from the Scout copy and
# maxtext llama4-17b-{16e,128e}.yml num_hidden_layers_for_vit: 34).
_LLAMA4_VISION: dict[str, Any] = {
    "model_type": "llama4_vision_model",
    "hidden_size": 1408,
    "intermediate_size": 5632,
    "num_attention_heads": 16,
    "num_hidden_layers": 34,
    "patch_size": 14,
    "image_size": 336,
    "vision_output_dim": 4096,
}

# What every Qwen3 dense checkpoint's config.json has (the entries below add their own sizes)
_QWEN3: dict[str, Any] = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "torch_dtype": "bfloat16",
    "vocab_size": 151936,
}

# What Llama 4 Scout and Maverick share in their text_config (same sources as the entries below)
_LLAMA4_TEXT: dict[str, Any] = {
    "model_type": "llama4_text",
    "hidden_size": 5120,
    "intermediate_size": 8192,
    "intermediate_size_mlp": 16384,
    "num_hidden_layers": 48,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "num_experts_per_tok": 1,
    "attention_chunk_size": 8192,
    "torch_dtype": "bfloat16",
    "vocab_size": 202048,
}

# mistralai/Mistral-Small-3.1-24B-Instruct-2503 -- a test fixture headed "Verbatim
# Mistral-Small-3.1-24B-Instruct-2503 config.json" and TensorRT-LLM's Mistral3 test config (same
# values, layers cut to 4 there for CI); both found via the code index.
_MISTRAL_SMALL_31: dict[str, Any] = {
    "architectures": ["Mistral3ForConditionalGeneration"],
    "model_type": "mistral3",
    "spatial_merge_size": 2,
    "text_config": {
        "model_type": "mistral",
        "hidden_size": 5120,
        "intermediate_size": 32768,
        "num_hidden_layers": 40,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 131072,
        "sliding_window": None,
        "vocab_size": 131072,
    },
    "vision_config": {
        "model_type": "pixtral",
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "head_dim": 64,
        "patch_size": 14,
        "image_size": 1540,
    },
    "torch_dtype": "bfloat16",
}


# key: lower-case Hugging Face repo id
CONFIGS: dict[str, dict[str, Any]] = {
    # --- Qwen3 dense -----------------------------------------------------------------------
    # 0.6B and 1.7B -- maxtext hf_model_configs.py qwen3_0_6b_config / qwen3_1_7b_config (the
    # values of the HF files; the max_window_layers/sliding_window keys of these two files were
    # not seen and are left out -- use_sliding_window is false throughout Qwen3).
    "qwen/qwen3-0.6b": {
        **_QWEN3,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "tie_word_embeddings": True,
    },
    "qwen/qwen3-1.7b": {
        **_QWEN3,
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "tie_word_embeddings": True,
    },
    # 4B/8B/14B/32B -- verbatim copies in citsjtu2020/LLM-Prof sglang/Model_Config.md, matching
    # maxtext hf_model_configs.py qwen3_{4b,8b,14b,32b}_config.
    "qwen/qwen3-4b": {
        **_QWEN3,
        "hidden_size": 2560,
        "intermediate_size": 9728,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_window_layers": 36,
        "sliding_window": None,
        "use_sliding_window": False,
        "rope_scaling": None,
        "tie_word_embeddings": True,
    },
    "qwen/qwen3-8b": {
        **_QWEN3,
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_window_layers": 36,
        "sliding_window": None,
        "use_sliding_window": False,
        "rope_scaling": None,
        "tie_word_embeddings": False,
    },
    "qwen/qwen3-14b": {
        **_QWEN3,
        "hidden_size": 5120,
        "intermediate_size": 17408,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "max_window_layers": 40,
        "sliding_window": None,
        "use_sliding_window": False,
        "rope_scaling": None,
        "tie_word_embeddings": False,
    },
    "qwen/qwen3-32b": {
        **_QWEN3,
        "hidden_size": 5120,
        "intermediate_size": 25600,
        "num_hidden_layers": 64,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "max_window_layers": 64,
        "sliding_window": None,
        "use_sliding_window": False,
        "rope_scaling": None,
        "tie_word_embeddings": False,
    },
    # --- Qwen3 MoE -------------------------------------------------------------------------
    "qwen/qwen3-30b-a3b": _QWEN3_30B_A3B,
    # The 2507 refreshes share every layer/expert/head size with their originals but NOT the
    # position limit: max_position_embeddings 262144 (and a larger rope_theta). Sources:
    # 30B-A3B-Instruct-2507 model card ("Context Length: 262,144 natively", 30.5B/3.3B, 48
    # layers, 32/4 heads, 128 experts, 8 active; copy in peterhan91/mimic_skills
    # docs/qwen3-a3b.md) and maxtext qwen3_30b_a3b_thinking_2507_config (262144, else identical).
    "qwen/qwen3-30b-a3b-instruct-2507": {**_QWEN3_30B_A3B, "max_position_embeddings": 262144},
    "qwen/qwen3-30b-a3b-thinking-2507": {**_QWEN3_30B_A3B, "max_position_embeddings": 262144},
    "qwen/qwen3-235b-a22b": _QWEN3_235B_A22B,
    # 235B-A22B-Instruct-2507: a copy headed ".../Qwen3-235B-A22B-Instruct-2507/config.json"
    # (found via the code index) and alibaba/InferSim hf_configs/qwen3-235B-A22B_config.json;
    # Thinking-2507: maxtext qwen3_235b_a22b_thinking_2507_config. Both 262144, else identical.
    "qwen/qwen3-235b-a22b-instruct-2507": {
        **_QWEN3_235B_A22B,
        "max_position_embeddings": 262144,
    },
    "qwen/qwen3-235b-a22b-thinking-2507": {
        **_QWEN3_235B_A22B,
        "max_position_embeddings": 262144,
    },
    # --- gpt-oss (sources above _GPT_OSS_COMMON) -------------------------------------------
    "openai/gpt-oss-20b": {
        **_GPT_OSS_COMMON,
        "num_hidden_layers": 24,
        "num_local_experts": 32,
        "layer_types": ["sliding_attention", "full_attention"] * 12,
    },
    "openai/gpt-oss-120b": {
        **_GPT_OSS_COMMON,
        "num_hidden_layers": 36,
        "num_local_experts": 128,
        "layer_types": ["sliding_attention", "full_attention"] * 18,
    },
    # --- DeepSeek ----------------------------------------------------------------------------
    "deepseek-ai/deepseek-v3": _DEEPSEEK_V3,
    # V3-0324 and R1 are re-trainings of the V3 architecture with the same config.json shape
    # (671B, 61 layers, MLA, 256+1 experts, fp8 128x128 blocks).
    # unconfirmed: neither file itself was seen; a public model-dims table lists deepseek-r1 with
    # exactly the V3 numbers (vocab 129280, 163840 positions, 61 layers, 7168 hidden, 128 heads,
    # q_lora 1536, kv_lora 512, rope 64, nope 128, v 128, 256 experts top-8, 1 shared, 3 dense).
    "deepseek-ai/deepseek-v3-0324": _DEEPSEEK_V3,
    "deepseek-ai/deepseek-r1": _DEEPSEEK_V3,
    "deepseek-ai/deepseek-v2-lite": _DEEPSEEK_V2_LITE,
    # unconfirmed: the -Chat file itself was not seen; its model card gives the same 16B/2.4B,
    # 32k model as DeepSeek-V2-Lite (SFT of it), so the shape is taken to be identical.
    "deepseek-ai/deepseek-v2-lite-chat": _DEEPSEEK_V2_LITE,
    # --- Llama 4 -------------------------------------------------------------------------------
    # Scout-17B-16E-Instruct: text dims and rope_scaling from several copies (a Scout base
    # config.json pasted in AMD-AGI/Primus PR #165; aws-neuron's LLAMA4_SCOUT_MINIMAL_MOCK_CONFIG;
    # maxtext llama4-17b-16e.yml). max_position_embeddings 10485760 for the -Instruct repo: the
    # mock config, huggingface/text-generation-inference PR #3245 ("40 times that of
    # Llama-4-Scout-17B-16E", whose file says 262144) and tenstorrent/tt-inference-server #564
    # (10240K). Chunked attention (8192) on RoPE layers; every 4th layer is NoPE/global.
    "meta-llama/llama-4-scout-17b-16e-instruct": {
        "architectures": ["Llama4ForConditionalGeneration"],
        "model_type": "llama4",
        "text_config": {
            **_LLAMA4_TEXT,
            "num_local_experts": 16,
            "interleave_moe_layer_step": 1,
            # As in the Scout base file (Primus #165). Empty means transformers/vLLM fill the
            # default: NoPE on every 4th layer (no_rope_layer_interval 4).
            # unconfirmed: for the -Instruct file specifically.
            "no_rope_layers": [],
            "max_position_embeddings": 10485760,
            "rope_scaling": {
                "factor": 16.0,
                "high_freq_factor": 1.0,
                "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8192,
                "rope_type": "llama3",
            },
            "use_qk_norm": True,
        },
        "tie_word_embeddings": False,
        "vision_config": _LLAMA4_VISION,
        "torch_dtype": "bfloat16",
    },
    # Maverick-17B-128E-Instruct: TensorRT-LLM's LLAMA_4_MAVERICK_TWO_LAYER_CONFIG ("Llama4
    # Maverick config but with only 2 layers"; 48 restored from the comment "Reduced to 2 layers
    # from 48" and maxtext llama4-17b-128e.yml). max_position_embeddings 1048576 there and in
    # tt-inference-server #564 (1024K for -Instruct). MoE on every 2nd layer; the other 24 layers
    # are dense with intermediate_size_mlp 16384. That copy replaced no_rope_layers with a test
    # value, so the key is left out here (default: NoPE every 4th layer).
    "meta-llama/llama-4-maverick-17b-128e-instruct": {
        "architectures": ["Llama4ForConditionalGeneration"],
        "model_type": "llama4",
        "text_config": {
            **_LLAMA4_TEXT,
            "num_local_experts": 128,
            "interleave_moe_layer_step": 2,
            "max_position_embeddings": 1048576,
            "rope_scaling": None,
            "use_qk_norm": False,
        },
        "vision_config": _LLAMA4_VISION,
        "torch_dtype": "bfloat16",
    },
    # --- Gemma 3 -----------------------------------------------------------------------------
    # 1b-it (text only, Gemma3ForCausalLM): a verbatim copy in a "Gemma3 Checkpoint Loading" doc
    # (found via the code index) and TensorRT-LLM's GEMMA3_1B_CONFIG (layers/window cut there).
    "google/gemma-3-1b-it": {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "hidden_size": 1152,
        "intermediate_size": 6912,
        "num_hidden_layers": 26,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 512,
        "sliding_window_pattern": 6,
        "max_position_embeddings": 32768,
        "rope_scaling": None,
        "torch_dtype": "bfloat16",
        "vocab_size": 262144,
    },
    # 4b-it: sparse text_config, exactly these keys -- two independent copies ("The shape of
    # google/gemma-3-4b-it's config.json" and "The original gemma-3-4b-it's config.json names few
    # keys: transformers' defaults fill the rest"). Heads 8 / KV 4 / head_dim 256 / vocab 262208
    # / 131072 positions come from architecture.CLASS_DEFAULTS["gemma3_text"].
    "google/gemma-3-4b-it": {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "mm_tokens_per_image": 256,
        "text_config": {
            "model_type": "gemma3_text",
            "hidden_size": 2560,
            "intermediate_size": 10240,
            "num_hidden_layers": 34,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "sliding_window": 1024,
        },
        "vision_config": _GEMMA3_SIGLIP,
        "torch_dtype": "bfloat16",
    },
    # 12b-it: a copy headed "Source: google/gemma-3-12b-it config.json" (found via the code
    # index); dims also in maxtext gemma3-12b.yml. head_dim/vocab/positions from
    # architecture.CLASS_DEFAULTS.
    "google/gemma-3-12b-it": {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "mm_tokens_per_image": 256,
        "text_config": {
            "model_type": "gemma3_text",
            "hidden_size": 3840,
            "intermediate_size": 15360,
            "num_hidden_layers": 48,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "sliding_window": 1024,
        },
        "vision_config": _GEMMA3_SIGLIP,
        "torch_dtype": "bfloat16",
    },
    # 27b-it: TensorRT-LLM's GEMMA3_27B_CONFIG (same key set as the real file; it cuts
    # num_hidden_layers to 6 and sliding_window to 4 for the test -- 62 and 1024 from maxtext
    # gemma3-27b.yml and hf_model_configs.py). query_pre_attn_scalar 168 (= hidden/heads), not
    # head_dim. That copy also carries sliding_window_pattern 6.
    # unconfirmed: whether the real file spells sliding_window_pattern (6 is the class default).
    "google/gemma-3-27b-it": {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "mm_tokens_per_image": 256,
        "text_config": {
            "model_type": "gemma3_text",
            "hidden_size": 5376,
            "intermediate_size": 21504,
            "num_hidden_layers": 62,
            "num_attention_heads": 32,
            "num_key_value_heads": 16,
            "head_dim": 128,
            "query_pre_attn_scalar": 168,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "sliding_window": 1024,
        },
        "vision_config": _GEMMA3_SIGLIP,
        "torch_dtype": "bfloat16",
    },
    # --- Mistral Small 3.x --------------------------------------------------------------------
    # 2501 (text only): the same numbers in several test fixtures of "Mistral Small" configs and
    # in the repository's own params.json (copy: OpenMOSE/RWKV-LM-RLHF
    # main/tokenizer/mistralsmall3/params.json -- dim 5120, 40 layers, head_dim 128, hidden_dim
    # 32768, 32/8 heads, vocab 131072, max_seq_len 32768).
    "mistralai/mistral-small-24b-instruct-2501": {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_size": 5120,
        "intermediate_size": 32768,
        "num_hidden_layers": 40,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 32768,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",  # unconfirmed: torch_dtype of this file not seen
        "vocab_size": 131072,
    },
    "mistralai/mistral-small-3.1-24b-instruct-2503": _MISTRAL_SMALL_31,
    # 3.2-2506 ships the same Mistral3ForConditionalGeneration config as 3.1 (a transformers
    # 4.57 re-save with identical values was found via the code index, not attributed to a repo).
    # unconfirmed: the 2506 file itself was not seen.
    "mistralai/mistral-small-3.2-24b-instruct-2506": _MISTRAL_SMALL_31,
    # --- Phi-4 ----------------------------------------------------------------------------------
    # microsoft/phi-4 -- copy of the file in OpenMOSE/RWKV-LM-RLHF main/tokenizer/phi-4/config.json
    # (_name_or_path "microsoft/phi-4"). 40 heads / 10 KV heads, head_dim 128 (5120/40).
    "microsoft/phi-4": {
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "hidden_size": 5120,
        "intermediate_size": 17920,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 10,
        "max_position_embeddings": 16384,
        "original_max_position_embeddings": 16384,
        "rope_scaling": None,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "vocab_size": 100352,
    },
    # microsoft/Phi-4-mini-instruct -- a fixture "Trimmed from phi-4-mini/config.json" plus two
    # more fixtures with the same values. rope_scaling is longrope (long_factor/short_factor
    # lists, no "factor"); max_position_embeddings already states the long limit, so the lists
    # are left out here. partial_rotary_factor 0.75 (RoPE on 96 of 128 dims) changes no sizes.
    # unconfirmed: torch_dtype, and the file's sliding_window value (left out).
    "microsoft/phi-4-mini-instruct": {
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 32,
        "num_attention_heads": 24,
        "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "partial_rotary_factor": 0.75,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",  # unconfirmed
        "vocab_size": 200064,
    },
    # --- Others ------------------------------------------------------------------------------
    # Qwen/Qwen2.5-Coder-32B-Instruct -- same architecture as Qwen2.5-32B (verbatim base file in
    # citsjtu2020/LLM-Prof sglang/Model_Config.md; Instruct model card: 32.5B, 64 layers, 40/8
    # heads). unconfirmed: max_position_embeddings of the Coder-Instruct file (32768 believed;
    # the base file says 131072 and the card says "131,072 tokens" via YaRN).
    "qwen/qwen2.5-coder-32b-instruct": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 5120,
        "intermediate_size": 27648,
        "num_hidden_layers": 64,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "max_position_embeddings": 32768,  # unconfirmed (see above)
        "sliding_window": 131072,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "vocab_size": 152064,
    },
    # mistralai/Mixtral-8x7B-Instruct-v0.1 -- maxtext hf_model_configs.py ("from
    # https://huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1/blob/main/config.json").
    "mistralai/mixtral-8x7b-instruct-v0.1": {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "max_position_embeddings": 32768,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "vocab_size": 32000,
    },
    # Hybrids, kept so the checker can refuse them knowingly.
    # ibm-granite/granite-4.0-h-small (Mamba-2 + attention, MoE on every layer): the fields a
    # public write-up lists as "relevant fields only, fetched live" from its config.json; the
    # same write-up counts layer_types as 36 "mamba" + 4 "attention" (another fixture "trimmed
    # from the real published file" agrees on 40 layers, 32 heads, 4096, 72 experts, d_state
    # 128). unconfirmed: the positions of the 4 attention layers (so layer_types is left out),
    # mamba_n_heads / mamba_d_head, max_position_embeddings, and the architectures string
    # (GraniteMoeHybridForCausalLM is transformers' class for model_type granitemoehybrid).
    "ibm-granite/granite-4.0-h-small": {
        "architectures": ["GraniteMoeHybridForCausalLM"],  # unconfirmed (class name)
        "model_type": "granitemoehybrid",
        "hidden_size": 4096,
        "intermediate_size": 768,
        "shared_intermediate_size": 1536,
        "num_hidden_layers": 40,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "num_local_experts": 72,
        "num_experts_per_tok": 10,
        "mamba_d_state": 128,
        "mamba_d_conv": 4,
        "mamba_expand": 2,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "vocab_size": 100352,
    },
    # Qwen/Qwen3-Next-80B-A3B-Instruct (Gated DeltaNet linear attention; one full-attention
    # layer every 4: full_attention_interval, no layer_types key in the file) -- alibaba/InferSim
    # hf_configs/qwen3-next-80B-A3B_config.json and maxtext qwen3_next_80b_a3b_dict (identical).
    "qwen/qwen3-next-80b-a3b-instruct": {
        "architectures": ["Qwen3NextForCausalLM"],
        "model_type": "qwen3_next",
        "hidden_size": 2048,
        "intermediate_size": 5120,
        "moe_intermediate_size": 512,
        "shared_expert_intermediate_size": 512,
        "num_hidden_layers": 48,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "num_experts": 512,
        "num_experts_per_tok": 10,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "full_attention_interval": 4,
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 128,
        "linear_num_key_heads": 16,
        "linear_num_value_heads": 32,
        "linear_value_head_dim": 128,
        "partial_rotary_factor": 0.25,
        "max_position_embeddings": 262144,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "vocab_size": 151936,
    },
    # ai21labs/AI21-Jamba-Mini-1.7 (Mamba + attention 1:7, MoE every 2nd layer).
    # unconfirmed: the 1.7 Mini file was not seen. Values are transformers' JambaConfig defaults
    # (= ai21labs/Jamba-v0.1; its GGUF metadata in ggml-org/llama.cpp PR #7531 agrees: 32
    # blocks, 4096, ffn 14336, 32 heads, 262144 context), the 52B-total / 12B-active design the
    # Jamba 1.5/1.7 Mini cards describe.
    "ai21labs/ai21-jamba-mini-1.7": {
        "architectures": ["JambaForCausalLM"],
        "model_type": "jamba",
        "hidden_size": 4096,  # unconfirmed
        "intermediate_size": 14336,  # unconfirmed
        "num_hidden_layers": 32,  # unconfirmed
        "num_attention_heads": 32,  # unconfirmed
        "num_key_value_heads": 8,  # unconfirmed
        "num_experts": 16,  # unconfirmed
        "num_experts_per_tok": 2,  # unconfirmed
        "attn_layer_period": 8,  # unconfirmed
        "attn_layer_offset": 4,  # unconfirmed
        "expert_layer_period": 2,  # unconfirmed
        "expert_layer_offset": 1,  # unconfirmed
        "mamba_d_state": 16,  # unconfirmed
        "mamba_d_conv": 4,  # unconfirmed
        "mamba_expand": 2,  # unconfirmed
        "max_position_embeddings": 262144,  # unconfirmed
        "vocab_size": 65536,  # unconfirmed
    },
}


# Total parameters, billions, from the model card / safetensors metadata; only where known.
PARAMS: dict[str, float] = {
    # Qwen3 model cards ("Number of Parameters"): 0.6B card text seen on a page copy of
    # Qwen/Qwen3-0.6B; 8.2B, 14.8B, 32.8B, 30.5B (3.3B active) seen in card copies.
    "qwen/qwen3-0.6b": 0.6,
    "qwen/qwen3-1.7b": 1.7,  # unconfirmed: card text not seen (name)
    "qwen/qwen3-4b": 4.0,  # unconfirmed: card text not seen
    "qwen/qwen3-8b": 8.2,
    "qwen/qwen3-14b": 14.8,
    "qwen/qwen3-32b": 32.8,
    "qwen/qwen3-30b-a3b": 30.5,
    "qwen/qwen3-30b-a3b-instruct-2507": 30.5,
    "qwen/qwen3-30b-a3b-thinking-2507": 30.5,
    "qwen/qwen3-235b-a22b": 235.0,  # 22B active; unconfirmed: figure from the name
    "qwen/qwen3-235b-a22b-instruct-2507": 235.0,  # unconfirmed: as above
    "qwen/qwen3-235b-a22b-thinking-2507": 235.0,  # unconfirmed: as above
    # gpt-oss model card: 20.9B (3.6B active) and 116.8B (5.1B active).
    "openai/gpt-oss-20b": 20.9,
    "openai/gpt-oss-120b": 116.8,
    # DeepSeek-V3 README_WEIGHTS.md: 671B main model (+11.5B MTP module; 37B active).
    "deepseek-ai/deepseek-v3": 671.0,
    "deepseek-ai/deepseek-v3-0324": 671.0,
    "deepseek-ai/deepseek-r1": 671.0,
    # DeepSeek-V2-Lite: 15.7B (card rounds to 16B), 2.4B active.
    "deepseek-ai/deepseek-v2-lite": 15.7,
    "deepseek-ai/deepseek-v2-lite-chat": 15.7,
    # meta-llama/llama-models models/llama4/MODEL_CARD.md: 109B / 400B total, 17B active.
    "meta-llama/llama-4-scout-17b-16e-instruct": 109.0,
    "meta-llama/llama-4-maverick-17b-128e-instruct": 400.0,
    # gemma-3-4b-it: 4.30e9 advertised (a fixture's ADVERTISED_PARAMS, "what each model card
    # claims"). 1b/12b/27b: no figure confirmed.
    "google/gemma-3-4b-it": 4.3,
    "mistralai/mistral-small-24b-instruct-2501": 24.0,
    "mistralai/mistral-small-3.1-24b-instruct-2503": 24.0,
    "mistralai/mistral-small-3.2-24b-instruct-2506": 24.0,
    "microsoft/phi-4": 14.7,
    "microsoft/phi-4-mini-instruct": 3.84,
    "qwen/qwen2.5-coder-32b-instruct": 32.5,
    "mistralai/mixtral-8x7b-instruct-v0.1": 46.7,  # 12.9B active
    "ibm-granite/granite-4.0-h-small": 32.0,  # 9B active
    "qwen/qwen3-next-80b-a3b-instruct": 80.0,  # 3B active; unconfirmed: figure from the name
    "ai21labs/ai21-jamba-mini-1.7": 52.0,  # 12B active (Jamba Mini cards)
}
