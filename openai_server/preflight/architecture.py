"""A model's shape read from its config.json, per architecture family. Pure: a mapping in.

What sizes weights and KV cache differs by family, and so do the field names:
- mixture of experts: all experts are loaded (not only the active ones). Qwen2/3-MoE
  (`num_experts`, `moe_intermediate_size`, `decoder_sparse_step`, `mlp_only_layers`,
  `shared_expert_intermediate_size`), DeepSeek V2/V3 and Kimi (`n_routed_experts`,
  `n_shared_experts`, `first_k_dense_replace`, `moe_layer_freq`), Mixtral and gpt-oss
  (`num_local_experts`, experts as wide as `intermediate_size`), Llama 4
  (`num_local_experts`, `interleave_moe_layer_step`, dense layers `intermediate_size_mlp`, one
  shared expert per MoE layer);
- MLA (`kv_lora_rank`): one compressed latent per token and layer;
- sliding windows: `layer_types`, Gemma 3's `sliding_window_pattern`, gpt-oss's alternation, or
  a `sliding_window` on every layer (Mistral v0.1);
- state-space and linear-attention layers (Mamba, GatedDeltaNet): recognised, not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import quantization

# Architectures with state-space or linear-attention layers, whose per-request state vLLM sizes
# by rules this model does not follow (MambaSpec pages padded to the attention page).
STATE_SPACE_ARCHITECTURES = {
    "JambaForCausalLM",
    "BambaForCausalLM",
    "FalconH1ForCausalLM",
    "GraniteMoeHybridForCausalLM",
    "NemotronHForCausalLM",
    "Zamba2ForCausalLM",
    "MambaForCausalLM",
    "Mamba2ForCausalLM",
    "Qwen3NextForCausalLM",
    "Qwen3_5ForConditionalGeneration",
    "Lfm2ForCausalLM",
    "MiniMaxText01ForCausalLM",
    "Plamo2ForCausalLM",
}
STATE_LAYER_TYPES = {"mamba", "linear_attention", "mamba2", "conv", "ssm"}


@dataclass(frozen=True)
class Moe:
    experts: int  # routed experts per MoE layer (all are loaded)
    active: int  # routed experts per token
    intermediate: int  # one expert's MLP width
    layers: int  # how many layers are MoE (the rest dense)
    shared_intermediate: int = 0  # the shared expert(s)' total MLP width, per MoE layer

    def describe(self) -> str:
        shared = f" + shared {self.shared_intermediate}" if self.shared_intermediate else ""
        return (f"{self.experts} experts ({self.active} active, width {self.intermediate}"
                f"{shared}) in {self.layers} layers")  # fmt: skip


@dataclass(frozen=True)
class Mla:
    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    q_lora_rank: int = 0

    @property
    def latent(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim


@dataclass(frozen=True)
class Params:
    """Parameter counts by how vLLM stores and splits them."""

    embedding: int
    lm_head: int  # 0 when tied to the embedding
    linear: int  # attention and dense MLP (and shared experts): quantizable, split by TP
    experts: int  # routed experts: quantizable, split by TP (or EP)
    replicated: int  # routers, norms, MLA's down-projections: on every GPU, never quantized
    vision: int = 0  # a multimodal checkpoint's encoder and projector

    @property
    def total(self) -> int:
        return (self.embedding + self.lm_head + self.linear + self.experts + self.replicated
                + self.vision)  # fmt: skip


# What transformers' config classes fill in where a config.json leaves a field out (the file
# names only what differs from the class): Gemma 3's multimodal checkpoints omit these from
# their text_config (transformers' Gemma3TextConfig defaults, as vLLM reads them).
CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "max_position_embeddings": 131072,
        "sliding_window_pattern": 6,
        "tie_word_embeddings": True,
        "vocab_size": 262208,
    },
}


def text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's config (a multimodal checkpoint's text_config), with the config
    class's defaults under what the file says."""
    inner = config.get("text_config") or config.get("llm_config")
    c = inner if isinstance(inner, Mapping) else config
    defaults = CLASS_DEFAULTS.get(str(c.get("model_type") or ""), {})
    return {**defaults, **c} if defaults else c


def _int(c: Mapping[str, Any], *names: str, default: int = 0) -> int:
    for n in names:
        v = c.get(n)
        if v is not None and not isinstance(v, bool):
            return int(v)
    return default


def moe_of(c: Mapping[str, Any], layers: int) -> Moe | None:
    experts = _int(c, "num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts")
    if experts <= 1:
        return None
    active = _int(c, "num_experts_per_tok", "experts_per_token", "moe_topk", default=1)
    width = _int(c, "moe_intermediate_size", "intermediate_size")
    if "n_routed_experts" in c:  # DeepSeek V2/V3, Kimi K2
        first = _int(c, "first_k_dense_replace")
        freq = _int(c, "moe_layer_freq", default=1) or 1
        moe = [i >= first and i % freq == 0 for i in range(layers)]
        shared = _int(c, "n_shared_experts") * width
    elif "num_local_experts" in c and "interleave_moe_layer_step" in c:  # Llama 4
        step = _int(c, "interleave_moe_layer_step", default=1) or 1
        moe_layers = c.get("moe_layers")
        if isinstance(moe_layers, list):
            moe = [i in moe_layers for i in range(layers)]
        else:
            moe = [(i + 1) % step == 0 for i in range(layers)]
        shared = width  # one shared expert as wide as a routed one
    else:  # Qwen2/3-MoE, Mixtral, gpt-oss, OLMoE, ...
        step = _int(c, "decoder_sparse_step", default=1) or 1
        dense_only = set(c.get("mlp_only_layers") or ())
        moe = [i not in dense_only and (i + 1) % step == 0 for i in range(layers)]
        shared = _int(c, "shared_expert_intermediate_size")
    return Moe(experts, active, width, sum(moe), shared)


def mla_of(c: Mapping[str, Any]) -> Mla | None:
    if not c.get("kv_lora_rank"):
        return None
    return Mla(
        _int(c, "kv_lora_rank"), _int(c, "qk_rope_head_dim"), _int(c, "qk_nope_head_dim"),
        _int(c, "v_head_dim"), _int(c, "q_lora_rank"),
    )  # fmt: skip


def rope_cache_elements(c: Mapping[str, Any], head_dim: int, mla: Mla | None) -> int:
    """Elements of vLLM's RoPE cos/sin caches: one buffer per distinct RoPE, positions x rotary
    dims, kept in the model's dtype and counted in "Model loading took" (vLLM's
    layers/rotary_embedding: base.py registers `cos_sin_cache`; linear_scaling_rope.py sizes it
    `max_position_embeddings * factor`). Mostly a few MiB; Gemma 3's global layers (linear
    factor 8 over 131,072 positions, head_dim 256) take 0.5 GiB, measured on an H200 as part of
    vLLM's 22.62 GiB for the 12B text model (2026-12-02). `mla`: mla_of(c), the caller's."""
    rotary = mla.qk_rope_head_dim if mla else int(head_dim * float(c.get("partial_rotary_factor")
                                                                  or 1.0))  # fmt: skip
    positions = int(c.get("max_position_embeddings") or 2048)
    ropes: list[Mapping[str, Any]]
    per_type = c.get("rope_parameters")
    if isinstance(per_type, Mapping) and all(isinstance(v, Mapping) for v in per_type.values()):
        ropes = list(per_type.values())  # transformers 5: one RoPE per layer type
    else:
        ropes = [c.get("rope_scaling") or (per_type if isinstance(per_type, Mapping) else {})]
        if c.get("rope_local_base_freq") or c.get("model_type") == "gemma3_text":
            ropes.append({})  # Gemma 3's sliding layers: the default RoPE at the local base
    total = 0
    for r in ropes:
        kind = str(r.get("rope_type") or r.get("type") or "default")
        factor = float(r.get("factor") or 1.0)
        original = int(r.get("original_max_position_embeddings") or positions)
        rows = {"linear": positions * factor, "dynamic": positions * factor,
                "yarn": original * factor, "deepseek_yarn": original * factor,
                "longrope": positions + original}.get(kind, positions)  # fmt: skip
        total += int(rows) * rotary
    return total


def layer_kinds(config: Mapping[str, Any], c: Mapping[str, Any], layers: int) -> list[str]:
    """Each layer's attention kind: "full", "sliding", "chunked" or "state" (Mamba and the like)."""
    arch = str((config.get("architectures") or [""])[0])
    types = c.get("layer_types") or c.get("layers_block_type")
    if isinstance(types, list) and len(types) >= layers:
        out = []
        for t in types[:layers]:
            t = str(t).lower()
            if t in STATE_LAYER_TYPES:
                out.append("state")
            elif "sliding" in t:
                out.append("sliding")
            elif "chunk" in t:
                out.append("chunked")
            else:
                out.append("full")
        return out
    if arch in STATE_SPACE_ARCHITECTURES:
        return ["state"] * layers
    window = c.get("sliding_window")
    if c.get("use_sliding_window") is False:
        window = None
    pattern = _int(c, "sliding_window_pattern")
    if window and pattern:  # Gemma 3 before layer_types: every pattern-th layer is global
        return ["full" if (i + 1) % pattern == 0 else "sliding" for i in range(layers)]
    if window and arch == "GptOssForCausalLM":  # vLLM's gpt_oss.py: even layers slide
        return ["sliding" if i % 2 == 0 else "full" for i in range(layers)]
    if window and arch.startswith("Gemma2"):
        return ["sliding" if i % 2 == 0 else "full" for i in range(layers)]
    if c.get("attention_chunk_size"):  # Llama 4: 3 of 4 layers chunked, the 4th global (NoPE)
        interval = _int(c, "nope_layer_interval", default=4) or 4
        return ["full" if (i + 1) % interval == 0 else "chunked" for i in range(layers)]
    if window:
        return ["sliding"] * layers
    return ["full"] * layers


def vision_params(config: Mapping[str, Any]) -> int:
    """A ViT encoder's parameters from vision_config (SigLIP, Llama 4's, Pixtral's): per layer
    attention 4 h^2 and an MLP 2 h x width, plus a projector into the text model."""
    v = config.get("vision_config")
    if not isinstance(v, Mapping) or not v.get("hidden_size"):
        return 0
    h = _int(v, "hidden_size")
    width = _int(v, "intermediate_size", default=4 * h)
    depth = _int(v, "num_hidden_layers", "depth", "num_layers")
    text_hidden = _int(text_config(config), "hidden_size")
    return depth * (4 * h * h + 2 * h * width) + h * text_hidden


def params_of(
    config: Mapping[str, Any], c: Mapping[str, Any], layers: int, hidden: int, heads: int,
    kv_heads: int, head_dim: int, moe: Moe | None, mla: Mla | None,
) -> Params:  # fmt: skip
    vocab = _int(c, "vocab_size", default=_int(config, "vocab_size", default=32000))
    tied = bool(c.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))
    inter = _int(c, "intermediate_size", default=4 * hidden)
    dense_inter = _int(c, "intermediate_size_mlp", default=inter) if moe else inter
    replicated = layers * 2 * hidden + hidden  # norms
    if mla:
        q_dim = heads * (mla.qk_nope_head_dim + mla.qk_rope_head_dim)
        q = hidden * q_dim
        if mla.q_lora_rank:  # a low-rank query: down to q_lora_rank, then up to the heads
            q = hidden * mla.q_lora_rank + mla.q_lora_rank * q_dim
        kv_b = mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
        attention = q + kv_b + heads * mla.v_head_dim * hidden
        replicated += layers * (hidden * mla.latent + mla.kv_lora_rank + mla.q_lora_rank)
    else:
        attention = hidden * head_dim * (heads + 2 * kv_heads) + heads * head_dim * hidden
    linear = layers * attention
    experts = 0
    if moe:
        dense_layers = layers - moe.layers
        linear += dense_layers * 3 * hidden * dense_inter + moe.layers * 3 * hidden * (
            moe.shared_intermediate
        )
        experts = moe.layers * moe.experts * 3 * hidden * moe.intermediate
        replicated += moe.layers * moe.experts * hidden  # the router
    else:
        linear += layers * 3 * hidden * inter  # gated MLP: gate, up, down
    return Params(
        embedding=vocab * hidden,
        lm_head=0 if tied else vocab * hidden,
        linear=linear,
        experts=experts,
        replicated=replicated,
        vision=vision_params(config),
    )


def quant_of(config: Mapping[str, Any]) -> quantization.Quant | None:
    qc = config.get("quantization_config") or text_config(config).get("quantization_config")
    return quantization.from_config(qc) if isinstance(qc, Mapping) else None
