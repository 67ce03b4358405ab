"""The exact bytes of a checkpoint's weights, counted from its safetensors headers.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON naming every
tensor's dtype, shape and data_offsets, then the data (https://huggingface.co/docs/safetensors/index).
The header alone gives every tensor's size, so `serve check` can predict vLLM's "Model loading
took X GiB" without reading a byte of weights. Sources, in order: a local model directory; the
local Hugging Face cache at the profile's revision; with network, the Hub's own header reader.

Each source returns None where it does not hold the checkpoint, and raises `Unreadable` (one line,
for `serve check` to print as "not counted from the checkpoint") where it holds one it cannot read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..profile_values import names_a_path

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# safetensors' own reader refuses headers over 100 MB (MAX_HEADER_SIZE): a bigger length is a
# corrupt file, not a header worth reading into memory
MAX_HEADER = 100_000_000
HALF_DTYPES = frozenset({"F16", "BF16"})

# Checked in this order. Vision first: encoders have their own `layers.N` (InternViT-6B has 45,
# more than its 28-layer language model) and `embeddings`, which are neither MTP nor vocabulary.
_VISION = re.compile(
    r"(?:^|\.)[a-z0-9_]*(?:vision|visual|audio|image)"
    r"|(?:^|\.)(?:multi_modal_projector|mm_projector|vpm|resampler)\."
    r"|^mlp1\."  # InternVL's projector
)
_MTP = re.compile(r"(?:^|[._])mtp(?:[._]|$)")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_EMBEDDING = re.compile(
    r"(?:^|\.)(?:embed_tokens|wte|wpe|tok_embeddings|word_embeddings|embed_positions"
    r"|position_embeddings|embeddings|embedding)(?:\.|$)"
)
# `output.weight` only at the top (Llama's original format, InternLM2): RWKV's
# `blocks.0.att.output.weight` is an attention projection
_LM_HEAD = re.compile(r"(?:^|\.)(?:lm_head|embed_out)(?:\.|$)|^(?:[a-z_]+\.)?output\.weight$")
_EXPERTS = re.compile(r"\.experts\.")  # routed experts; `.shared_experts.` does not match


class Unreadable(ValueError):
    """A checkpoint at hand whose headers could not be read; str() is one line naming it."""


def category(name: str, ndim: int, num_hidden_layers: int | None) -> str:
    """Which of Summary's categories a tensor belongs to, by its name (and rank)."""
    if _VISION.search(name):
        return "vision"
    # vLLM's DeepSeek-V3, GLM-4.5 and MiMo loaders skip the multi-token-prediction layers shipped
    # after the last decoder layer (`model.layers.61.*` with 61 hidden layers) unless speculative
    # decoding runs them (`get_spec_layer_idx_from_weight_name`); Qwen3-Next names them `mtp.*`
    layer = _LAYER.search(name)
    if _MTP.search(name) or (
        layer and num_hidden_layers is not None and int(layer.group(1)) >= num_hidden_layers
    ):
        return "mtp"
    for label, pattern in (("embedding", _EMBEDDING), ("lm_head", _LM_HEAD), ("experts", _EXPERTS)):
        if pattern.search(name):
            return label
    return "linear" if ndim >= 2 else "other"


@dataclass(frozen=True)
class Tally:
    """What one category's tensors hold in the checkpoint."""

    tensors: int = 0
    elements: int = 0
    nbytes: int = 0
    f16_bytes: int = 0  # F16 and BF16: what vLLM's online fp8 quantization halves
    f32_bytes: int = 0


@dataclass(frozen=True)
class Summary:
    """A checkpoint's tensors by what vLLM does with them at load."""

    source: str  # where the headers were read, shown by `serve check`
    files: int
    embedding: Tally = Tally()  # vocabulary (and position) tables
    lm_head: Tally = Tally()
    experts: Tally = Tally()  # routed experts of mixture-of-experts layers
    vision: Tally = Tally()  # vision/audio encoders and their projectors
    mtp: Tally = Tally()  # multi-token-prediction layers, skipped without speculative decoding
    linear: Tally = Tally()  # every other weight of rank 2 or more
    other: Tally = Tally()  # norms, biases, scalars

    @property
    def has_lm_head(self) -> bool:
        return self.lm_head.tensors > 0

    @property
    def nbytes(self) -> int:
        """Every tensor in the checkpoint, loaded or not."""
        return sum(t.nbytes for t in vars(self).values() if isinstance(t, Tally))

    def loaded_bytes(
        self, *, tie_word_embeddings: bool, serve_vision: bool, fp8_at_load: bool
    ) -> int:
        """The weight bytes vLLM loads onto the GPUs (all ranks together) for this config."""
        loaded = (
            self.embedding.nbytes + self.experts.nbytes + self.linear.nbytes + self.other.nbytes
        )
        # Tied: vLLM's loaders skip `lm_head.*` and share the embedding. Untied: the checkpoint's
        # own lm_head; one that has none cannot load, so nothing is made up for it here.
        if not tie_word_embeddings:
            loaded += self.lm_head.nbytes
        # Text-only serving (every limit_mm_per_prompt at 0) leaves the encoders unloaded.
        if serve_vision:
            loaded += self.vision.nbytes
        # quantization=fp8 on a 16-bit checkpoint rewrites linear and fused-MoE weights as fp8
        # (1 byte) at load (Fp8LinearMethod, Fp8MoEMethod); embeddings and lm_head stay 16-bit.
        if fp8_at_load:
            loaded -= (self.linear.f16_bytes + self.experts.f16_bytes) // 2
        return loaded


def summarise(
    headers: Mapping[str, Mapping[str, Any]], num_hidden_layers: int | None, source: str, files: int
) -> Summary:
    """Summary of parsed safetensors headers (tensor name -> dtype, shape, data_offsets)."""
    counts: dict[str, list[int]] = {}
    for name, info in headers.items():
        if name == "__metadata__":
            continue
        shape = [int(n) for n in info["shape"]]
        start, end = info["data_offsets"]
        size = int(end) - int(start)  # the format's own size: dtype width x elements, packed
        dtype = str(info["dtype"])
        half, full = (size, 0) if dtype in HALF_DTYPES else (0, size if dtype == "F32" else 0)
        count = counts.setdefault(category(name, len(shape), num_hidden_layers), [0] * 5)
        for i, n in enumerate((1, math.prod(shape), size, half, full)):
            count[i] += n
    tallies = {label: Tally(*count) for label, count in counts.items()}
    return Summary(source, files, **tallies)


def read_header(path: Path) -> dict[str, Any]:
    """One safetensors file's parsed header, checked against the file's size; no tensor data."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little")
            size = path.stat().st_size
            if len(head) < 8 or length > min(size - 8, MAX_HEADER):
                raise Unreadable(f"{path}: header length {length} does not fit a {size}-byte file")
            header = json.loads(f.read(length))
    except OSError as e:
        raise Unreadable(f"{path}: {e.strerror or e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Unreadable(f"{path}: header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise Unreadable(f"{path}: header is not a JSON object")
    for name, info in header.items():
        if name != "__metadata__" and not _fits(info, size - 8 - length):
            # a download cut short keeps its header: the data it promises is what is missing
            raise Unreadable(f"{path}: tensor {name!r} is malformed or ends past the file's end")
    return header


def _fits(info: Any, data_size: int) -> bool:
    try:
        start, end = (int(n) for n in info["data_offsets"])
        shape_ok = all(int(n) >= 0 for n in info["shape"])
        return shape_ok and isinstance(info["dtype"], str) and 0 <= start <= end <= data_size
    except (TypeError, KeyError, ValueError):
        return False


def _summarise_files(paths: list[Path], num_hidden_layers: int | None, source: str) -> Summary:
    headers: dict[str, Any] = {}
    for path in paths:
        headers.update(read_header(path))
    return summarise(headers, num_hidden_layers, source, len(paths))


def _shards(index: Path) -> list[str]:
    """The files an index's weight_map names: vLLM loads those, not every *.safetensors beside."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        return sorted({str(file) for file in weight_map.values()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise Unreadable(f"{index}: no readable weight_map ({type(e).__name__})") from e


def from_directory(directory: Path, num_hidden_layers: int | None) -> Summary | None:
    """Counted from a local model directory's safetensors; None where it has none."""
    index = directory / INDEX
    if index.is_file():
        paths = [directory / name for name in _shards(index)]
        for path in paths:
            if not path.is_file():
                raise Unreadable(f"{index} names {path.name}, which is not in {directory}")
    else:
        paths = sorted(directory.glob("*.safetensors"))
    if not paths:
        return None
    source = f"safetensors headers, {directory} ({len(paths)} file{'s' * (len(paths) > 1)})"
    return _summarise_files(paths, num_hidden_layers, source)


def from_hf_cache(
    model: str,
    revision: str | None,
    num_hidden_layers: int | None,
    cache_dir: str | Path | None = None,
) -> Summary | None:
    """Counted from the local Hugging Face cache at `revision` (refs/main without one).

    None unless every file vLLM would load is there: a shard still downloading (huggingface_hub
    links it into snapshots/ only once complete) means vLLM fetches it, and the count is not exact.
    """
    if names_a_path(model):
        return None
    # As models.hf_cache_config: only the constants until the repo folder is known to exist, so a
    # model that was never fetched costs `serve check` no HTTP client import.
    from huggingface_hub import constants

    hub = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE)
    repo = hub / constants.REPO_ID_SEPARATOR.join(["models", *model.split("/")])
    if not repo.is_dir():
        return None
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> Path | None:
        try:  # a str is a complete file; None or _CACHED_NO_EXIST are not
            found = try_to_load_from_cache(model, filename, cache_dir=hub, revision=revision)
        except ValueError:  # HFValidationError: not a repo id
            return None
        return Path(found) if isinstance(found, str) else None

    index = cached(INDEX)
    names = _shards(index) if index is not None else [SINGLE]
    paths = [cached(name) for name in names]
    if not all(paths):
        return None
    found = [p for p in paths if p is not None]
    commit = found[0].relative_to(repo / "snapshots").parts[0]
    source = f"Hugging Face cache, safetensors headers at {commit}"
    return _summarise_files(found, num_hidden_layers, source)


def from_hub(
    model: str, revision: str | None, num_hidden_layers: int | None, token: str | None = None
) -> Summary | None:
    """Counted from the Hub's safetensors headers (HTTP range requests); None offline.

    `token`: None is huggingface_hub's own (HF_TOKEN, else the saved login). A sharded repo's
    index is fetched whole into the Hugging Face cache, as vLLM would fetch it; no shard is.
    """
    from huggingface_hub import constants

    if names_a_path(model) or constants.HF_HUB_OFFLINE:
        return None
    import inspect

    from huggingface_hub import get_safetensors_metadata
    from huggingface_hub.utils.tqdm import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    # Every request is bounded by HF_HUB_ETAG_TIMEOUT (10 s unless set), per connect or read, not
    # per call: huggingface_hub gives its HEAD requests that, and the header range GETs take it
    # where they accept a timeout (huggingface_hub PR 4378; before it they had none).
    options: dict[str, Any] = {}
    if "timeout" in inspect.signature(get_safetensors_metadata).parameters:
        options["timeout"] = constants.HF_HUB_ETAG_TIMEOUT
    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # its "Parse safetensors files" bar on stderr is not `serve check`'s
    try:
        meta = get_safetensors_metadata(model, revision=revision, token=token, **options)
    except Exception as e:  # its errors are OSError, httpx's and its own: any means not counted
        raise Unreadable(f"Hugging Face Hub, {model}: {_hub_reason(e)}") from e
    finally:
        if not quiet:
            enable_progress_bars()
    headers = {
        name: {"dtype": t.dtype, "shape": t.shape, "data_offsets": t.data_offsets}
        for file in meta.files_metadata.values()
        for name, t in file.tensors.items()
    }
    source = f"Hugging Face Hub, safetensors metadata at {revision or 'main'}"
    return summarise(headers, num_hidden_layers, source, len(meta.files_metadata))


def _hub_reason(error: Exception) -> str:
    kind = type(error).__name__
    if kind == "GatedRepoError":
        return "gated: accept its terms on huggingface.co, then set HF_TOKEN"
    if kind == "NotASafetensorsRepoError":  # also what a private repo looks like without a token
        return f"no {SINGLE} or {INDEX} (a private repo needs HF_TOKEN)"
    lines = str(error).strip().splitlines()
    return f"{kind}: {lines[0]}" if lines else kind


def find(
    model: str,
    revision: str | None,
    num_hidden_layers: int | None,
    *,
    network: bool = False,
    cache_dir: str | Path | None = None,
) -> Summary | None:
    """Counted from a local directory, else the cache, else (with `network`) the Hub; or None.

    Raises Unreadable where a source holds the checkpoint but cannot be read.
    """
    local = Path(model).expanduser()
    if names_a_path(model) or local.is_dir():
        return from_directory(local, num_hidden_layers) if local.is_dir() else None
    counted = from_hf_cache(model, revision, num_hidden_layers, cache_dir)
    if counted is None and network:
        counted = from_hub(model, revision, num_hidden_layers)
    return counted
