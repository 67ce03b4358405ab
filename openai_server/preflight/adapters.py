"""What serve can know, before vLLM starts, about a profile's LoRA adapters and its model's layers.

The I/O side of the feature checks (rules in features.py): an adapter is read as PEFT writes it
(adapter_config.json, adapter_model.safetensors) and as vLLM's LoRA loader reads it; the model's
linear layers and the adapter's matrices are read from safetensors headers only (8 bytes of
length, then JSON: no tensor is loaded, so this is milliseconds even for a 140 GB model).
Nothing here downloads: a Hub id that is not in the local Hugging Face cache is "not downloaded".
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..profile import BUILTIN_MODEL_PREFIX
from ..profile_values import names_a_path

# A layer's module inside a weight name: `model.layers.0.self_attn.qkv_proj.weight` ->
# `self_attn.qkv_proj`; PEFT prefixes `base_model.model.` and suffixes `.lora_A.weight`.
_LAYER_MODULE = re.compile(r"\.layers\.\d+\.(?P<module>.+?)\.(?:lora_[AB]\.)?weight$")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on its JSON header


@dataclass(frozen=True)
class Adapter:
    name: str  # the lora_modules key: the `model` clients send
    source: str  # as the profile writes it
    directory: Path | None = None
    problem: str = ""  # why it cannot be served; "" when readable
    downloaded: bool = True  # False: a Hub id not in the local cache (nothing checked)
    peft_type: str | None = None
    rank: int | None = None
    base_model: str | None = None
    target_modules: list[str] | str | None = None
    # layer module -> (out features, in features) that the adapter's matrices imply
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from a safetensors file's header."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"{path.name}: a {length}-byte header is not safetensors")
        header = json.loads(f.read(length))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def layer_linears(shapes: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
    """Module -> (out, in) of each 2-D weight inside a layer (the same in every layer)."""
    out: dict[str, tuple[int, int]] = {}
    for name, shape in shapes.items():
        m = _LAYER_MODULE.search(name)
        if m and len(shape) == 2 and ".lora_" not in name:
            out.setdefault(m["module"], (shape[0], shape[1]))
    return out


def _cached(repo: str, filename: str, revision: str | None = None) -> Path | None:
    """A file of a Hub repository in the local cache, or None (huggingface_hub's own lookup)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def model_linears(model_dir: Path | None, repo: str | None = None,
                  revision: str | None = None) -> dict[str, tuple[int, int]] | None:  # fmt: skip
    """The model's layer linears from its first weight file holding layer 0, or None unknown."""

    def find(filename: str) -> Path | None:
        if model_dir is not None:
            return model_dir / filename if (model_dir / filename).is_file() else None
        return _cached(repo, filename, revision) if repo else None

    try:
        index = find("model.safetensors.index.json")
        if index is not None:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
            shard = next((f for n, f in weight_map.items() if ".layers.0." in n), None)
            path = find(shard) if shard else None
        else:
            path = find("model.safetensors")
        return layer_linears(safetensors_shapes(path)) or None if path else None
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def read(name: str, source: str, *, builtin_dir: Path | None = None) -> Adapter:
    """Read one lora_modules entry: a directory, a Hub id (from the cache only) or a built-in."""
    if source.startswith(BUILTIN_MODEL_PREFIX):
        directory = builtin_dir
    else:
        local = Path(source).expanduser()
        if local.is_dir():
            directory = local
        elif names_a_path(source) or local.exists():
            return Adapter(name, source, problem="no such directory")
        else:
            cached = _cached(source, "adapter_config.json")
            if cached is None:
                return Adapter(name, source, downloaded=False)
            directory = cached.parent
    assert directory is not None
    config_path = directory / "adapter_config.json"
    try:
        config: dict[str, Any] = json.loads(config_path.read_text())
    except FileNotFoundError:
        return Adapter(name, source, directory, "not a PEFT adapter: no adapter_config.json")
    except (OSError, ValueError) as e:
        return Adapter(name, source, directory, f"adapter_config.json unreadable: {e}")
    if not isinstance(config, dict):
        return Adapter(name, source, directory, "adapter_config.json is not a JSON object")
    weights = directory / "adapter_model.safetensors"
    shapes: dict[str, tuple[int, int]] = {}
    if weights.is_file():
        try:
            shapes = _adapter_shapes(safetensors_shapes(weights))
        except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
            return Adapter(name, source, directory, f"adapter_model.safetensors unreadable: {e}")
    elif not (directory / "adapter_model.bin").is_file():
        return Adapter(name, source, directory, "no adapter_model.safetensors (or .bin)")
    rank = config.get("r")
    targets = config.get("target_modules")
    return Adapter(
        name,
        source,
        directory,
        peft_type=str(config.get("peft_type", "")) or None,
        rank=rank if isinstance(rank, int) else None,
        base_model=config.get("base_model_name_or_path") or None,
        target_modules=targets if isinstance(targets, (list, str)) else None,
        shapes=shapes,
    )


def _adapter_shapes(shapes: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
    """Module -> (out, in) implied by lora_B (out x r) and lora_A (r x in)."""
    a: dict[str, int] = {}
    b: dict[str, int] = {}
    for name, shape in shapes.items():
        m = _LAYER_MODULE.search(name)
        if not m or len(shape) != 2:
            continue
        if ".lora_A." in name:
            a.setdefault(m["module"], shape[1])
        elif ".lora_B." in name:
            b.setdefault(m["module"], shape[0])
    return {mod: (b[mod], a[mod]) for mod in a if mod in b}
