"""The built-in LoRA adapter for the tiny model, generated deterministically like the model.

A PEFT adapter directory (adapter_config.json + adapter_model.safetensors, the layout vLLM's
LoRA loader and PEFT read) on all four linear modules of each layer. Its B matrices are not zero
(PEFT starts training from B = 0, which changes nothing): the adapter must change the model's
greedy output, so that a test can see it applied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import ADAPTER_RANK, HEADS, HIDDEN, INTERMEDIATE, LAYERS, NAME, adapter_dir, generate_once

RANK = ADAPTER_RANK
SEED = 20261127
# Phi-3's fused linear modules: (input features, output features) of each.
MODULES = {
    "self_attn.qkv_proj": (HIDDEN, 3 * HIDDEN),
    "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_up_proj": (HIDDEN, 2 * INTERMEDIATE),
    "mlp.down_proj": (INTERMEDIATE, HIDDEN),
}
assert HIDDEN % HEADS == 0


def write(out: Path, *, rank: int = RANK, base: str = f"builtin:{NAME}", seed: int = SEED,
          modules: dict[str, tuple[int, int]] | None = None) -> Path:  # fmt: skip
    """Write an adapter of `rank` for `base` into `out` (tests make wrong ones with it too)."""
    import numpy as np
    from safetensors.numpy import save_file

    modules = MODULES if modules is None else modules
    rng = np.random.default_rng(seed)
    tensors: dict[str, Any] = {}
    for layer in range(LAYERS):
        for module, (fan_in, fan_out) in modules.items():
            key = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(0, 0.5, (rank, fan_in)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = rng.normal(0, 0.5, (fan_out, rank)).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "target_modules": sorted({m.rsplit(".", 1)[-1] for m in modules}),
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
    }
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def ensure(cache_dir: Path | None = None) -> Path:
    """Generate the built-in adapter unless it is there (atomically, as the model)."""
    # adapter_config.json is written after the weights: its presence means a whole adapter
    return generate_once(adapter_dir(cache_dir), "adapter_config.json", write)
