"""The model a rehearsal serves: the profile's model *shape*, with no weights.

vLLM serves random weights with `--load-format dummy` from a directory that has the model's
config.json and a tokenizer covering its vocabulary; memory and speed are the real model's, the
text is noise. The config comes from the model's own config.json (a local directory, or the
Hugging Face cache), else from the shape table of `serve check`; the tokenizer is the built-in
model's, padded with filler ids to the model's vocabulary size, with the same chat template.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import tiny
from ..errors import RefusedError
from ..preflight import architecture, models
from ..profile import BUILTIN_MODEL_PREFIX, Profile

# The table's architectures -> the model_type transformers needs to read the config back.
MODEL_TYPES = {
    "LlamaForCausalLM": "llama",
    "Phi3ForCausalLM": "phi3",
    "Qwen2ForCausalLM": "qwen2",
    "MistralForCausalLM": "mistral",
    "Gemma2ForCausalLM": "gemma2",
}
# The quantization methods that quantize a bf16 checkpoint as vLLM loads it, and so run from a
# table shape; every other method (awq, gptq, compressed-tensors, modelopt, quark, ...) reads its
# layout from the checkpoint's own config.json (quantization_config), which the table lacks.
QUANTIZED_AT_LOAD = {"fp8", "experts_int8"}


def own_config(profile: Profile) -> Path | None:
    """The config.json the profile's model has on this host: in its local directory, or in the
    Hugging Face cache for a hub id (at the profile's revision); None where it has none here."""
    if profile.model.startswith(BUILTIN_MODEL_PREFIX):
        return None
    local = Path(profile.model).expanduser()
    path = local / "config.json" if local.is_dir() else None
    if path is None:
        path = models.hf_cache_config(profile.model, profile.revision)
    return path if path is not None and path.is_file() else None


def config_for(profile: Profile) -> tuple[dict[str, Any], str]:
    """(config.json mapping, where it came from) for the profile's model."""
    if (path := own_config(profile)) is not None:
        return json.loads(path.read_text()), str(path)
    fix = (f"fix: `hf download {profile.model} config.json` (a few KB), or point model at a "
           "directory with it")  # fmt: skip
    listed = models.table_config(profile.model)
    if listed is not None:
        return text_only(listed), "serve's shape table (the checkpoint's config.json values)"
    shape = models.in_table(profile.model)
    if shape is not None and profile.quantization not in {None, *QUANTIZED_AT_LOAD}:
        raise RefusedError(
            f"rehearse: quantization {profile.quantization} needs the checkpoint's own config.json "
            f"(its quantization_config); serve's table has only the shape of {profile.model}; {fix}"
        )
    if shape is not None and shape.architecture not in MODEL_TYPES:
        raise RefusedError(
            f"rehearse: serve's table has the size of {profile.model} but cannot write a "
            f"config.json for {shape.architecture}; {fix}"
        )
    if shape is None:
        raise RefusedError(
            f"rehearse: no shape for {profile.model}: no config.json in a local directory or the "
            f"Hugging Face cache, and not in serve's table; {fix}"
        )
    return table_config(shape), "serve's shape table"


# Multimodal table entries are rehearsed as their text model: the dummy checkpoint has no image
# processor, and the vision encoder (counted by `serve check`) is a small, fixed part of the memory.
TEXT_MODELS = {
    "Gemma3ForConditionalGeneration": ("Gemma3ForCausalLM", "gemma3_text"),
    "Llama4ForConditionalGeneration": ("Llama4ForCausalLM", "llama4_text"),
    "Mistral3ForConditionalGeneration": ("MistralForCausalLM", "mistral"),
}
# Architectures whose chat path needs files a rehearsal cannot have: gpt-oss renders chats with
# the harmony encoding, which vLLM fetches at the first chat request ("error downloading or
# loading vocab file" offline); a rehearsal smokes and benches them through /v1/completions.
COMPLETIONS_ONLY = {"GptOssForCausalLM"}


def completions_only(shape: models.Shape | None) -> bool:
    return shape is not None and shape.architecture in COMPLETIONS_ONLY


def text_only(config: dict[str, Any]) -> dict[str, Any]:
    """A table entry's config.json as vLLM loads it in a rehearsal, ids within the tokenizer's."""
    arch = str((config.get("architectures") or [""])[0])
    if arch in TEXT_MODELS and isinstance(config.get("text_config"), dict):
        name, model_type = TEXT_MODELS[arch]
        # with the config class's defaults the sparse text_config leaves out (Gemma 3: heads,
        # head_dim, vocab), written out: transformers reads the text model with another class
        text = architecture.text_config(config)
        config = {**text, "architectures": [name], "model_type": model_type}
    return {**config, "torch_dtype": config.get("torch_dtype") or "bfloat16",
            "bos_token_id": 0, "eos_token_id": 4, "pad_token_id": None}  # fmt: skip


def table_config(shape: models.Shape) -> dict[str, Any]:
    """A config.json for a table shape: what vLLM's memory use and speed depend on."""
    extra: dict[str, Any] = {}
    if shape.architecture == "MistralForCausalLM":
        # transformers' MistralConfig defaults to a 4096-token sliding window; the table's Mistral
        # (v0.3) has none, and a window would change how vLLM sizes and groups the KV cache
        extra["sliding_window"] = None
    return extra | {
        "architectures": [shape.architecture],
        "model_type": MODEL_TYPES[shape.architecture],
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "vocab_size": shape.vocab,
        "max_position_embeddings": shape.max_positions,
        "tie_word_embeddings": shape.tied_embeddings,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0 if shape.architecture == "LlamaForCausalLM" else 10000.0,
        "torch_dtype": "bfloat16",
        "bos_token_id": 0,
        "eos_token_id": 4,  # the tokenizer's <|end|>
    }


def build(profile: Profile, cache_dir: Path | None = None) -> tuple[Path, str]:
    """(directory vLLM loads with --load-format dummy, where the config came from)."""
    if profile.model.startswith(BUILTIN_MODEL_PREFIX):
        return tiny.ensure(cache_dir), f"built-in {tiny.NAME}"
    config, source = config_for(profile)
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    name = profile.model.rstrip("/").rsplit("/", 1)[-1]
    target = (cache_dir or tiny.default_cache_dir()) / "rehearsal" / f"{name}-{digest}"
    vocab = int(architecture.text_config(config).get("vocab_size") or config["vocab_size"])

    def write(out: Path) -> None:
        tiny.write_tokenizer(out, vocab)
        (out / "config.json").write_text(text)  # last: its presence means a whole directory

    return tiny.generate_once(target, "config.json", write), source
