"""A model's shape (what sizes weights and KV cache), found without downloading anything.

Sources, in order: a local model directory's config.json; the local Hugging Face cache (the
snapshot of the profile's revision, else the one refs/main names, as vLLM would load); a built-in
table of well-known models; the built-in tiny model's own constants. The parameter count comes
from the table when known (the real checkpoints' counts), else it is computed from config.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import tiny
from ..profile import BUILTIN_MODEL_PREFIX
from ..profile_values import names_a_path
from . import architecture, table
from .architecture import Mla, Moe, Params
from .quantization import Quant

if TYPE_CHECKING:  # the reader itself is imported only where a checkpoint lies at hand
    from .checkpoint import Summary


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_positions: int
    params: int
    source: str  # where the shape came from, shown by `serve check`
    tied_embeddings: bool = False
    architecture: str = ""
    # Read from config.json where the family has them; a table entry built by _shape() is a
    # dense, full-attention model whose weights follow from `params`.
    counts: Params | None = None
    moe: Moe | None = None
    mla: Mla | None = None
    kinds: tuple[str, ...] = ()  # each layer's attention kind (architecture.layer_kinds); ()=full
    window: int = 0  # the sliding window of the "sliding" layers
    quant: Quant | None = None  # the checkpoint's own quantization_config
    weights_source: str = ""  # where the weight figure comes from, said by `serve check`
    exact_weights: Summary | None = None  # the safetensors headers' bytes, where read
    rope_cache: int = 0  # elements of vLLM's RoPE caches (architecture.rope_cache_elements)

    @property
    def state_space(self) -> bool:
        return "state" in self.kinds

    def param_counts(self) -> Params:
        """The counts, or a dense model's from its total (the checkpoint's own count)."""
        if self.counts is not None:
            return self.counts
        embedding = self.vocab * self.hidden
        lm_head = 0 if self.tied_embeddings else embedding
        return Params(embedding, lm_head, max(0, self.params - embedding - lm_head), 0, 0)


def _shape(
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    intermediate: int,
    vocab: int,
    max_positions: int,
    params_b: float,
    head_dim: int | None = None,
    tied: bool = False,
    arch: str = "",
) -> Shape:
    return Shape(
        layers,
        hidden,
        heads,
        kv_heads,
        head_dim or hidden // heads,
        intermediate,
        vocab,
        max_positions,
        int(params_b * 1e9),
        "built-in table",
        tied,
        arch,
    )


def _phi3_mini(positions: int) -> Shape:
    return _shape(32, 3072, 32, 32, 8192, 32064, positions, 3.821, arch="Phi3ForCausalLM")


def _phi3_small(positions: int) -> Shape:
    return _shape(32, 4096, 32, 8, 14336, 100352, positions, 7.392, arch="Phi3SmallForCausalLM")


def _phi3_medium(positions: int) -> Shape:
    return _shape(40, 5120, 40, 10, 17920, 32064, positions, 13.96, arch="Phi3ForCausalLM")


def _llama_8b(positions: int) -> Shape:
    return _shape(32, 4096, 32, 8, 14336, 128256, positions, 8.03, arch="LlamaForCausalLM")


def _llama_70b(positions: int) -> Shape:
    return _shape(80, 8192, 64, 8, 28672, 128256, positions, 70.55, arch="LlamaForCausalLM")


# Keys are lower-case Hugging Face ids. Counts are the checkpoints' own (safetensors metadata).
BUILTIN: dict[str, Shape] = {
    "microsoft/phi-3-mini-4k-instruct": _phi3_mini(4096),
    "microsoft/phi-3-mini-128k-instruct": _phi3_mini(131072),
    "microsoft/phi-3.5-mini-instruct": _phi3_mini(131072),
    "microsoft/phi-3-small-8k-instruct": _phi3_small(8192),
    "microsoft/phi-3-small-128k-instruct": _phi3_small(131072),
    "microsoft/phi-3-medium-4k-instruct": _phi3_medium(4096),
    "microsoft/phi-3-medium-128k-instruct": _phi3_medium(131072),
    "meta-llama/llama-3.2-1b-instruct": _shape(
        16,
        2048,
        32,
        8,
        8192,
        128256,
        131072,
        1.236,
        head_dim=64,
        tied=True,
        arch="LlamaForCausalLM",
    ),
    "meta-llama/llama-3.2-3b-instruct": _shape(
        28,
        3072,
        24,
        8,
        8192,
        128256,
        131072,
        3.213,
        head_dim=128,
        tied=True,
        arch="LlamaForCausalLM",
    ),
    "meta-llama/meta-llama-3-8b-instruct": _llama_8b(8192),
    "meta-llama/llama-3.1-8b-instruct": _llama_8b(131072),
    "meta-llama/meta-llama-3-70b-instruct": _llama_70b(8192),
    "meta-llama/llama-3.1-70b-instruct": _llama_70b(131072),
    "meta-llama/llama-3.3-70b-instruct": _llama_70b(131072),
    "mistralai/mistral-7b-instruct-v0.3": _shape(
        32, 4096, 32, 8, 14336, 32768, 32768, 7.248, arch="MistralForCausalLM"
    ),
    "qwen/qwen2.5-0.5b-instruct": _shape(
        24, 896, 14, 2, 4864, 151936, 32768, 0.494, tied=True, arch="Qwen2ForCausalLM"
    ),
    "qwen/qwen2.5-1.5b-instruct": _shape(
        28, 1536, 12, 2, 8960, 151936, 32768, 1.544, tied=True, arch="Qwen2ForCausalLM"
    ),
    "qwen/qwen2.5-3b-instruct": _shape(
        36, 2048, 16, 2, 11008, 151936, 32768, 3.086, tied=True, arch="Qwen2ForCausalLM"
    ),
    "qwen/qwen2.5-7b-instruct": _shape(
        28, 3584, 28, 4, 18944, 152064, 32768, 7.616, arch="Qwen2ForCausalLM"
    ),
    "qwen/qwen2.5-14b-instruct": _shape(
        48, 5120, 40, 8, 13824, 152064, 32768, 14.77, arch="Qwen2ForCausalLM"
    ),
    "qwen/qwen2.5-32b-instruct": _shape(
        64, 5120, 40, 8, 27648, 152064, 32768, 32.76, arch="Qwen2ForCausalLM"
    ),
    "qwen/qwen2.5-72b-instruct": _shape(
        80, 8192, 64, 8, 29568, 152064, 32768, 72.71, arch="Qwen2ForCausalLM"
    ),
    # Gemma 2 alternates sliding-window layers; vLLM still sizes every layer's KV for the full
    # length in the releases we support, so the plain formula holds.
    "google/gemma-2-2b-it": _shape(
        26, 2304, 8, 4, 9216, 256000, 8192, 2.614, head_dim=256, tied=True, arch="Gemma2ForCausalLM"
    ),
    "google/gemma-2-9b-it": _shape(
        42,
        3584,
        16,
        8,
        14336,
        256000,
        8192,
        9.242,
        head_dim=256,
        tied=True,
        arch="Gemma2ForCausalLM",
    ),
    "google/gemma-2-27b-it": _shape(
        46,
        4608,
        32,
        16,
        36864,
        256000,
        8192,
        27.23,
        head_dim=128,
        tied=True,
        arch="Gemma2ForCausalLM",
    ),
}


def _lookup_key(model: str) -> str:
    key = model.lower()
    # base (non-instruct) checkpoints have the same shape as their instruct versions
    if key in BUILTIN or key in table.CONFIGS:
        return key
    for suffix in ("-instruct", "-it"):
        if key + suffix in BUILTIN or key + suffix in table.CONFIGS:
            return key + suffix
    return key


def table_config(model: str) -> dict[str, Any] | None:
    """The table's config.json values for a Hugging Face id (families read per architecture)."""
    found = table.CONFIGS.get(_lookup_key(model))
    return dict(found) if found is not None else None


def in_table(model: str) -> Shape | None:
    """The shape table's entry for a Hugging Face id (base checkpoints as their instruct twins)."""
    key = _lookup_key(model)
    if key in BUILTIN:
        return BUILTIN[key]
    config = table.CONFIGS.get(key)
    if config is None:
        return None
    # counted from the config (table.PARAMS are the model cards' rounded totals: a check only)
    shape = from_config(dict(config), "built-in table")
    return replace(shape, weights_source="built-in table (the checkpoint's config.json values)")


def hf_cache_config(
    model: str, revision: str | None = None, cache_dir: str | Path | None = None
) -> Path | None:
    """config.json of `org/name` at `revision` in the local Hugging Face cache, if cached there.

    `revision` is a branch, tag or commit hash, as vLLM's --revision; without one, the snapshot
    refs/main names (what vLLM loads). `cache_dir` is the hub cache (HF_HUB_CACHE's meaning);
    default: huggingface_hub's own, from HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME.
    """
    if names_a_path(model):
        return None
    # Only huggingface_hub.constants here (3 ms in `serve check`): try_to_load_from_cache's module
    # brings in huggingface_hub's HTTP client (+0.15 s on top of what `serve check` has loaded),
    # paid only for a model that is in the cache at all, not for a table model planned from a
    # laptop. The folder name is the layout the Hub documents
    # (https://huggingface.co/docs/hub/local-cache).
    from huggingface_hub import constants

    hub = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE)
    repo = hub / constants.REPO_ID_SEPARATOR.join(["models", *model.split("/")])
    if not repo.is_dir():
        return None

    from huggingface_hub import try_to_load_from_cache

    try:
        # Resolves `revision` through refs/ (a branch, tag or short hash fetched before) or takes
        # it as a commit hash; None, or the _CACHED_NO_EXIST marker, when that snapshot has no
        # config.json (https://huggingface.co/docs/huggingface_hub/package_reference/cache).
        found = try_to_load_from_cache(model, "config.json", cache_dir=hub, revision=revision)
    except ValueError:  # HFValidationError: not a valid repo id (a relative path, say)
        return None
    if isinstance(found, str):
        return Path(found)
    if revision is None and not (repo / "refs" / "main").is_file():
        # No refs/main: fetched by commit hash only (huggingface_hub writes refs for branch and
        # tag names, not for full hashes) or copied in by hand, so which snapshot is main is
        # unknown. The newest is the likeliest stand-in; Shape.source shows which one was taken.
        return _newest_snapshot_config(repo)
    return None


def _newest_snapshot_config(repo: Path) -> Path | None:
    configs = [c for c in (repo / "snapshots").glob("*/config.json") if c.is_file()]
    # lstat: a snapshot's entries are symlinks into blobs/, created when that snapshot was fetched
    return max(configs, key=lambda c: c.lstat().st_mtime, default=None)


def from_config(config: dict[str, Any], source: str, params: int | None = None) -> Shape:
    """Shape from a Hugging Face config.json mapping (text configs of multimodal models too).

    `params`: the checkpoint's own parameter count where known (the table's); it replaces the
    dense linear count computed from config.json, which misses biases and odd layers.
    """
    c = architecture.text_config(config)
    hidden = int(c["hidden_size"])
    heads = int(c["num_attention_heads"])
    kv_heads = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or hidden // heads)
    layers = int(c["num_hidden_layers"])
    moe = architecture.moe_of(c, layers)
    mla = architecture.mla_of(c)
    counts = architecture.params_of(config, c, layers, hidden, heads, kv_heads, head_dim, moe, mla)
    if params is not None and moe is None and mla is None:
        others = counts.total - counts.linear
        counts = replace(counts, linear=max(0, params - others))
    kinds = tuple(architecture.layer_kinds(config, c, layers))
    window = int(c.get("sliding_window") or 0) if "sliding" in kinds else 0
    return Shape(
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=int(c.get("intermediate_size") or 4 * hidden),
        vocab=counts.embedding // hidden,
        max_positions=int(c.get("max_position_embeddings") or 2048),
        params=params if params is not None else counts.total,
        source=source,
        tied_embeddings=counts.lm_head == 0,
        architecture=str((config.get("architectures") or [""])[0]),
        counts=counts,
        moe=moe,
        mla=mla,
        kinds=() if set(kinds) == {"full"} else kinds,
        window=window,
        quant=architecture.quant_of(config),
        weights_source="config.json",
        rope_cache=architecture.rope_cache_elements(c, head_dim, mla),
    )


def tiny_shape() -> Shape:
    config = {
        "hidden_size": tiny.HIDDEN,
        "num_attention_heads": tiny.HEADS,
        "num_hidden_layers": tiny.LAYERS,
        "intermediate_size": tiny.INTERMEDIATE,
        "vocab_size": tiny.VOCAB_TARGET,
        "max_position_embeddings": tiny.MAX_POSITIONS,
        "architectures": ["Phi3ForCausalLM"],
    }
    return from_config(config, f"built-in {tiny.NAME}")


def find(
    model: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    network: bool = False,
) -> Shape | None:
    """The shape of `model` (local dir, HF cache at `revision`, built-in table), or None.

    The weights are the exact bytes of the checkpoint's safetensors headers where it is at hand
    (checkpoint.find: the local directory, the Hugging Face cache at `revision`; with `network`,
    the Hub's headers over HTTP range requests, `serve check --hub`)."""
    shape = _find(model, revision, cache_dir)
    if shape is None or model.startswith(BUILTIN_MODEL_PREFIX):
        return shape
    from . import checkpoint

    try:
        found = checkpoint.find(model, revision, shape.layers, network=network,
                                cache_dir=cache_dir)  # fmt: skip
    except checkpoint.Unreadable as e:  # not counted: said, and the config's count stands
        return replace(shape, weights_source=f"{shape.weights_source or shape.source} ({e})")
    if found is None:
        return shape
    return replace(shape, exact_weights=found, weights_source=found.source)


def _find(model: str, revision: str | None, cache_dir: str | Path | None) -> Shape | None:
    if model.startswith(BUILTIN_MODEL_PREFIX):
        return tiny_shape()
    local = Path(model).expanduser()
    config_path = (
        local / "config.json" if local.is_dir() else hf_cache_config(model, revision, cache_dir)
    )
    known = in_table(model)
    if config_path is not None and config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
            shape = from_config(config, str(config_path), known.params if known else None)
        except (OSError, ValueError, KeyError, TypeError):
            return known  # an unreadable config falls back to the table
        return shape
    return known
