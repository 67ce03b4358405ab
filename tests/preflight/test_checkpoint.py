"""Exact weight bytes from safetensors headers: a local directory, the HF cache, the Hub.

Every file here is a real safetensors file (the header written as the format specifies, checked by
the safetensors package's own reader); the cache is laid out as huggingface_hub writes it; the Hub
path runs the real `huggingface_hub.get_safetensors_metadata` over an HTTP transport that answers
its HEAD and range GET requests with the files' bytes. No request leaves this machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import huggingface_hub
import huggingface_hub.constants
import numpy as np
import pytest
import safetensors
import safetensors.numpy

from openai_server.preflight import checkpoint
from openai_server.preflight.checkpoint import Summary, Unreadable
from tests.conftest import modules_loaded_by
from tests.helpers.hub import httpx, intercepted

WIDTH = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "U8": 1, "I32": 4}
Tensors = dict[str, tuple[str, list[int]]]


def safetensors_bytes(tensors: Tensors) -> bytes:
    """A safetensors file (https://huggingface.co/docs/safetensors/index), data all zeros."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * WIDTH[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes with spaces
    return len(raw).to_bytes(8, "little") + raw + bytes(offset)


def nbytes(tensors: Tensors) -> int:
    return sum(math.prod(shape) * WIDTH[dtype] for dtype, shape in tensors.values())


def llama(layers: int = 2, tied: bool = False, dtype: str = "BF16") -> Tensors:
    hidden, inter, vocab = 16, 32, 64
    t: Tensors = {"model.embed_tokens.weight": (dtype, [vocab, hidden])}
    for i in range(layers):
        p = f"model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t[p + f"self_attn.{proj}.weight"] = (dtype, [hidden, hidden])
        t[p + "mlp.gate_proj.weight"] = (dtype, [inter, hidden])
        t[p + "mlp.up_proj.weight"] = (dtype, [inter, hidden])
        t[p + "mlp.down_proj.weight"] = (dtype, [hidden, inter])
        t[p + "input_layernorm.weight"] = (dtype, [hidden])
    t["model.norm.weight"] = (dtype, [hidden])
    if not tied:
        t["lm_head.weight"] = (dtype, [vocab, hidden])
    return t


def shard(tensors: Tensors, parts: int) -> dict[str, Tensors]:
    names = list(tensors)
    files = {}
    for i in range(parts):
        file = f"model-{i + 1:05d}-of-{parts:05d}.safetensors"
        files[file] = {n: tensors[n] for n in names[i::parts]}
    return files


def index_bytes(files: dict[str, Tensors]) -> bytes:
    weight_map = {name: file for file, tensors in files.items() for name in tensors}
    return json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}).encode()


def repo_files(tensors: Tensors, parts: int = 1) -> dict[str, bytes]:
    """A repository's files as vLLM reads them: one model.safetensors or an index and shards."""
    if parts == 1:
        return {"model.safetensors": safetensors_bytes(tensors)}
    files = shard(tensors, parts)
    out = {name: safetensors_bytes(t) for name, t in files.items()}
    return {"model.safetensors.index.json": index_bytes(files), **out}


def write_dir(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


# ---- the writer above against safetensors' own reader and writer


def test_hand_written_files_are_what_the_safetensors_package_reads(tmp_path: Path) -> None:
    tensors = llama(layers=1)
    path = write_dir(tmp_path, repo_files(tensors)) / "model.safetensors"
    with safetensors.safe_open(path, framework="numpy") as f:
        assert set(f.keys()) == set(tensors)
        for name, (dtype, shape) in tensors.items():
            assert f.get_slice(name).get_shape() == shape
            assert f.get_slice(name).get_dtype() == dtype


def test_a_file_the_safetensors_package_wrote_is_counted_exactly(tmp_path: Path) -> None:
    arrays: dict[str, np.ndarray[Any, np.dtype[Any]]] = {
        "model.embed_tokens.weight": np.zeros((64, 16), np.float16),
        "model.layers.0.mlp.up_proj.weight": np.zeros((32, 16), np.float32),
        "model.norm.weight": np.zeros(16, np.float16),
    }
    safetensors.numpy.save_file(arrays, tmp_path / "model.safetensors")
    found = checkpoint.find(str(tmp_path), None, 1)
    assert found is not None and found.nbytes == sum(a.nbytes for a in arrays.values())
    assert found.linear == checkpoint.Tally(1, 32 * 16, 32 * 16 * 4, 0, 32 * 16 * 4)
    assert found.embedding.f16_bytes == 64 * 16 * 2 and found.other.elements == 16


# ---- categories


@pytest.mark.parametrize(
    ("name", "ndim", "layers", "expected"),
    [
        ("model.embed_tokens.weight", 2, 32, "embedding"),
        ("transformer.wte.weight", 2, 12, "embedding"),
        ("tok_embeddings.weight", 2, 32, "embedding"),
        ("language_model.model.embed_tokens.weight", 2, 32, "embedding"),
        ("lm_head.weight", 2, 32, "lm_head"),
        ("language_model.lm_head.weight", 2, 32, "lm_head"),
        ("output.weight", 2, 32, "lm_head"),  # Llama's original format
        ("gpt_neox.embed_out.weight", 2, 32, "lm_head"),
        ("blocks.3.att.output.weight", 2, 24, "linear"),  # RWKV: an attention projection
        ("model.layers.3.mlp.experts.17.gate_proj.weight", 2, 61, "experts"),
        ("model.layers.0.mlp.experts.gate_up_proj_blocks", 4, 24, "experts"),  # gpt-oss mxfp4
        ("model.layers.0.mlp.experts.gate_up_proj_scales", 3, 24, "experts"),
        ("model.layers.0.mlp.experts.gate_up_proj_bias", 2, 24, "experts"),
        ("language_model.model.layers.1.feed_forward.experts.gate_up_proj", 3, 48, "experts"),
        ("model.layers.3.mlp.shared_experts.gate_proj.weight", 2, 61, "linear"),
        ("model.layers.3.mlp.shared_expert.up_proj.weight", 2, 24, "linear"),
        ("model.layers.3.mlp.shared_expert_gate.weight", 2, 24, "linear"),
        ("model.layers.3.mlp.gate.weight", 2, 61, "linear"),  # the router
        ("model.layers.3.mlp.gate.e_score_correction_bias", 1, 61, "other"),
        ("vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight", 2, 34, "vision"),
        ("vision_model.encoder.layers.40.mlp.fc1.weight", 2, 28, "vision"),  # InternViT-6B: 45
        ("model.visual.blocks.0.attn.qkv.weight", 2, 28, "vision"),
        ("multi_modal_projector.linear_1.weight", 2, 32, "vision"),
        ("model.mm_projector.0.weight", 2, 32, "vision"),
        ("image_newline", 1, 32, "vision"),
        ("vision_encoder.transformer.layers.0.attention.wq.weight", 2, 40, "vision"),
        ("model.vision_embed_tokens.img_projection.0.weight", 2, 32, "vision"),  # Phi-3-vision
        ("thinker.audio_tower.layers.0.fc1.weight", 2, 28, "vision"),
        ("mlp1.1.weight", 2, 24, "vision"),  # InternVL's projector
        ("model.layers.61.mlp.experts.0.up_proj.weight", 2, 61, "mtp"),  # DeepSeek-V3
        ("model.layers.61.embed_tokens.weight", 2, 61, "mtp"),
        ("model.layers.61.shared_head.head.weight", 2, 61, "mtp"),
        ("model.layers.60.self_attn.kv_a_proj_with_mqa.weight", 2, 61, "linear"),
        ("model.layers.61.eh_proj.weight", 2, None, "linear"),  # no config: nothing is beyond
        ("mtp.layers.0.self_attn.q_proj.weight", 2, 48, "mtp"),  # Qwen3-Next
        ("model.mtp_layers.0.input_proj.weight", 2, 36, "mtp"),  # MiMo
        ("model.layers.0.self_attn.q_proj.weight", 2, 32, "linear"),
        ("model.layers.0.input_layernorm.weight", 1, 32, "other"),
        ("model.layers.0.self_attn.q_proj.bias", 1, 32, "other"),
    ],
)
def test_tensor_names_fall_in_the_category_vllm_treats_them_as(
    name: str, ndim: int, layers: int | None, expected: str
) -> None:
    assert checkpoint.category(name, ndim, layers) == expected


# ---- a local model directory


def test_sharded_directory_is_counted_from_the_files_its_index_names(tmp_path: Path) -> None:
    tensors = llama()
    write_dir(tmp_path, repo_files(tensors, parts=3))
    # Mistral repos ship the same weights twice; the index leaves consolidated.* out, as vLLM does
    (tmp_path / "consolidated.safetensors").write_bytes(safetensors_bytes(llama()))
    found = checkpoint.find(str(tmp_path), None, 2)
    assert found is not None and found.files == 3
    assert found.source == f"safetensors headers, {tmp_path} (3 files)"
    assert found.nbytes == nbytes(tensors)
    assert found.embedding.nbytes == found.lm_head.nbytes == 64 * 16 * 2
    assert found.linear.tensors == 14 and found.other.tensors == 3 and found.has_lm_head
    plain = found.loaded_bytes(tie_word_embeddings=False, serve_vision=True, fp8_at_load=False)
    assert plain == nbytes(tensors)


def test_single_file_directory_is_counted(tmp_path: Path) -> None:
    tensors = llama(layers=3, dtype="F16")
    write_dir(tmp_path / "m", repo_files(tensors))
    found = checkpoint.from_directory(tmp_path / "m", 3)
    assert found is not None and found.files == 1 and found.nbytes == nbytes(tensors)
    assert found.source.endswith("m (1 file)")
    assert found.linear.f16_bytes == found.linear.nbytes == 3 * (4 * 16 * 16 + 3 * 32 * 16) * 2


def test_a_directory_without_safetensors_or_a_missing_path_is_not_counted(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"\0" * 64)
    assert checkpoint.find(str(tmp_path), None, 2) is None
    assert checkpoint.find(str(tmp_path / "absent"), None, 2) is None
    assert checkpoint.find("./absent", None, 2) is None


@pytest.mark.parametrize("ships_lm_head", [False, True])
def test_tied_embeddings_count_the_vocabulary_once(tmp_path: Path, ships_lm_head: bool) -> None:
    tensors = llama(tied=not ships_lm_head)
    found = checkpoint.from_directory(write_dir(tmp_path, repo_files(tensors)), 2)
    assert found is not None and found.has_lm_head is ships_lm_head
    tied = found.loaded_bytes(tie_word_embeddings=True, serve_vision=False, fp8_at_load=False)
    # vLLM skips lm_head.weight of a tied model and shares the embedding
    assert tied == nbytes(llama(tied=True))


def test_an_untied_config_without_lm_head_in_the_checkpoint_invents_none(tmp_path: Path) -> None:
    found = checkpoint.from_directory(write_dir(tmp_path, repo_files(llama(tied=True))), 2)
    assert found is not None
    untied = found.loaded_bytes(tie_word_embeddings=False, serve_vision=False, fp8_at_load=False)
    assert untied == found.nbytes == nbytes(llama(tied=True))


def moe(dtype: str = "BF16") -> Tensors:
    t = llama(layers=1, dtype=dtype)
    for e in range(4):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            t[f"model.layers.0.mlp.experts.{e}.{proj}.weight"] = (dtype, [32, 16])
    t["model.layers.0.mlp.shared_experts.up_proj.weight"] = (dtype, [32, 16])
    t["model.layers.0.mlp.gate.weight"] = (dtype, [4, 16])
    return t


def test_moe_experts_are_their_own_category_and_fp8_at_load_halves_them(tmp_path: Path) -> None:
    found = checkpoint.from_directory(write_dir(tmp_path, repo_files(moe())), 1)
    assert found is not None
    assert found.experts.tensors == 12 and found.experts.nbytes == 12 * 32 * 16 * 2
    assert found.linear.tensors == 7 + 2  # attention, dense MLP, shared expert, router
    full = found.loaded_bytes(tie_word_embeddings=False, serve_vision=False, fp8_at_load=False)
    fp8 = found.loaded_bytes(tie_word_embeddings=False, serve_vision=False, fp8_at_load=True)
    # linear and experts become 1 byte per element; embedding, lm_head and norms stay 16-bit
    assert full - fp8 == (found.linear.nbytes + found.experts.nbytes) // 2
    assert fp8 == found.nbytes - found.linear.elements - found.experts.elements


def test_fp8_at_load_leaves_already_quantized_bytes_alone(tmp_path: Path) -> None:
    t = llama(layers=1)
    t["model.layers.0.mlp.experts.gate_up_proj_blocks"] = ("U8", [4, 64, 2, 16])  # gpt-oss mxfp4
    t["model.layers.0.mlp.experts.gate_up_proj_scales"] = ("U8", [4, 64, 2])
    t["model.layers.0.self_attn.q_proj.weight"] = ("F8_E4M3", [16, 16])
    found = checkpoint.from_directory(write_dir(tmp_path, repo_files(t)), 1)
    assert found is not None and found.experts.f16_bytes == 0
    full = found.loaded_bytes(tie_word_embeddings=False, serve_vision=False, fp8_at_load=False)
    fp8 = found.loaded_bytes(tie_word_embeddings=False, serve_vision=False, fp8_at_load=True)
    # only the bf16 k, v, o and MLP weights are halved: 1 byte less per element
    assert full - fp8 == 3 * 16 * 16 + 3 * 32 * 16


def test_a_vision_tower_is_counted_only_when_vision_is_served(tmp_path: Path) -> None:
    t = {f"language_model.{k}": v for k, v in llama().items()}
    tower = {
        "vision_tower.vision_model.embeddings.patch_embedding.weight": ("BF16", [16, 3, 4, 4]),
        "vision_tower.vision_model.encoder.layers.5.self_attn.q_proj.weight": ("BF16", [16, 16]),
        "vision_tower.vision_model.post_layernorm.weight": ("BF16", [16]),
        "multi_modal_projector.linear_1.weight": ("BF16", [16, 16]),
    }
    found = checkpoint.from_directory(write_dir(tmp_path, repo_files({**t, **tower})), 2)
    assert found is not None and found.vision.nbytes == nbytes(tower) and found.mtp.tensors == 0
    text = found.loaded_bytes(tie_word_embeddings=False, serve_vision=False, fp8_at_load=False)
    both = found.loaded_bytes(tie_word_embeddings=False, serve_vision=True, fp8_at_load=False)
    assert text == nbytes(t) and both == nbytes(t) + nbytes(tower)


def test_mtp_layers_past_num_hidden_layers_are_not_loaded(tmp_path: Path) -> None:
    # DeepSeek-V3 ships its MTP module as model.layers.61.* beside 61 decoder layers
    tensors = llama(layers=3)
    found = checkpoint.from_directory(write_dir(tmp_path, repo_files(tensors)), 2)
    assert found is not None and found.mtp.tensors == 8
    loaded = found.loaded_bytes(tie_word_embeddings=False, serve_vision=True, fp8_at_load=False)
    assert loaded == nbytes(llama(layers=2)) and found.nbytes == nbytes(tensors)
    unknown = checkpoint.from_directory(tmp_path, None)
    assert unknown is not None and unknown.mtp.tensors == 0


# ---- unreadable files: one line naming the file, never a traceback


def corrupt_cases() -> dict[str, Callable[[bytes], bytes]]:
    return {
        "header longer than the file": lambda good: good[:8] + good[8:40],
        "shorter than the length": lambda good: good[:5],
        "header not JSON": lambda good: good[:8] + b"\xff" * (len(good) - 8),
        "data cut short": lambda good: good[: len(good) - 100],
        "absurd header length": lambda good: (2**62).to_bytes(8, "little") + good[8:],
    }


@pytest.mark.parametrize("case", list(corrupt_cases()))
def test_a_corrupt_or_truncated_file_is_unreadable_in_one_line_naming_it(
    tmp_path: Path, case: str
) -> None:
    good = safetensors_bytes(llama(layers=1))
    write_dir(tmp_path, {"model.safetensors": corrupt_cases()[case](good)})
    with pytest.raises(Unreadable) as raised:
        checkpoint.find(str(tmp_path), None, 1)
    message = str(raised.value)
    assert str(tmp_path / "model.safetensors") in message and "\n" not in message
    assert isinstance(raised.value, ValueError)  # read_header's documented error


def test_a_malformed_tensor_entry_is_unreadable(tmp_path: Path) -> None:
    raw = json.dumps({"w": {"dtype": "BF16", "shape": [2]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 4)
    with pytest.raises(Unreadable, match="tensor 'w' is malformed"):
        checkpoint.read_header(tmp_path / "model.safetensors")


def test_an_index_naming_a_missing_shard_is_unreadable(tmp_path: Path) -> None:
    files = repo_files(llama(), parts=2)
    del files["model-00002-of-00002.safetensors"]
    write_dir(tmp_path, files)
    with pytest.raises(
        Unreadable, match=re.escape("model-00002-of-00002.safetensors, which is not in")
    ):
        checkpoint.find(str(tmp_path), None, 2)
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(Unreadable, match="no readable weight_map"):
        checkpoint.find(str(tmp_path), None, 2)


# ---- the local Hugging Face cache, laid out as huggingface_hub writes it
# (https://huggingface.co/docs/hub/local-cache): refs/<name> holds a commit hash,
# snapshots/<hash>/<file> links into blobs/<sha256>, and a download in progress is
# blobs/<sha256>.incomplete with no link yet.

MODEL = "acme/moe-7b"
MAIN = "4d5e1c2b9a8f7e6d5c4b3a291807f6e5d4c3b2a1"
BRANCH = "9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2f1e0d9c8"


def cache_repo(hub: Path, model: str = MODEL) -> Path:
    return hub / ("models--" + model.replace("/", "--"))


def cache_snapshot(hub: Path, commit: str, files: dict[str, bytes], ref: str | None) -> Path:
    repo = cache_repo(hub)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    return snap


def test_the_cache_is_counted_at_refs_main_and_at_a_revision(tmp_path: Path) -> None:
    cache_snapshot(tmp_path, MAIN, repo_files(moe(), parts=2), "main")
    cache_snapshot(tmp_path, BRANCH, repo_files(llama()), "dense")
    found = checkpoint.find(MODEL, None, 1, cache_dir=tmp_path)
    assert found is not None and found.files == 2 and found.experts.tensors == 12
    assert found.source == f"Hugging Face cache, safetensors headers at {MAIN}"
    dense = checkpoint.from_hf_cache(MODEL, "dense", 2, tmp_path)
    assert dense is not None and dense.files == 1 and dense.nbytes == nbytes(llama())
    assert BRANCH in dense.source
    assert checkpoint.from_hf_cache(MODEL, BRANCH, 2, tmp_path) == dense  # a commit hash too


def test_a_shard_missing_or_still_downloading_in_the_cache_means_no_exact_count(
    tmp_path: Path,
) -> None:
    files = repo_files(moe(), parts=2)
    partial = files.pop("model-00002-of-00002.safetensors")
    cache_snapshot(tmp_path, MAIN, files, "main")
    assert checkpoint.from_hf_cache(MODEL, None, 1, tmp_path) is None
    blob = cache_repo(tmp_path) / "blobs" / (hashlib.sha256(partial).hexdigest() + ".incomplete")
    blob.write_bytes(partial[: len(partial) // 2])
    assert checkpoint.from_hf_cache(MODEL, None, 1, tmp_path) is None


def test_an_uncached_model_or_revision_or_a_path_is_not_looked_up_in_the_cache(
    tmp_path: Path,
) -> None:
    cache_snapshot(tmp_path, MAIN, repo_files(llama()), "main")
    assert checkpoint.from_hf_cache("acme/other", None, 2, tmp_path) is None
    assert checkpoint.from_hf_cache(MODEL, "v2.0", 2, tmp_path) is None
    assert checkpoint.from_hf_cache("./acme/moe-7b", None, 2, tmp_path) is None
    (tmp_path / "models--a--b--c").mkdir()  # so that huggingface_hub's validation is reached
    assert checkpoint.from_hf_cache("a/b/c", None, 2, tmp_path) is None


def test_a_corrupt_cached_shard_is_unreadable(tmp_path: Path) -> None:
    files = repo_files(llama(), parts=2)
    files["model-00001-of-00002.safetensors"] = b"\x10" + b"\0" * 7 + b"not json, really"
    cache_snapshot(tmp_path, MAIN, files, "main")
    with pytest.raises(
        Unreadable, match=re.escape("model-00001-of-00002.safetensors: header is not JSON")
    ):
        checkpoint.find(MODEL, None, 2, cache_dir=tmp_path)


def test_looking_in_the_cache_for_a_model_never_fetched_imports_no_http_client(
    tmp_path: Path,
) -> None:
    code = (
        f"import os; os.environ['HF_HUB_CACHE'] = {str(tmp_path)!r}\n"
        "from openai_server.preflight import checkpoint\n"
        "assert checkpoint.find('acme/never-fetched', None, 2, network=False) is None"
    )
    loaded = modules_loaded_by(code)
    assert "huggingface_hub.constants" in loaded
    assert not [m for m in loaded if m.startswith(("huggingface_hub.file_download", "httpx"))]


# ---- the Hub: the real get_safetensors_metadata over an intercepted HTTP client

HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """huggingface_hub answered from `hub["files"]`; yields {"files", "sent", "fault"}."""
    # get_safetensors_metadata downloads a sharded repo's index into the cache: keep it here
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    state: dict[str, Any] = {"files": {}, "sent": [], "fault": None}

    def answer(request: Any) -> Any:
        state["sent"].append(request)
        if state["fault"] is not None:
            return state["fault"](request)
        path = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", request.url.path)
        data = state["files"].get(path[3]) if path and path[1] == MODEL else None
        if data is None:
            return httpx.Response(404, headers={"X-Error-Code": "EntryNotFound"})
        headers = {
            "X-Repo-Commit": HUB_COMMIT,
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Content-Length": str(len(data)),
        }
        if request.method == "HEAD":
            return httpx.Response(200, headers=headers)
        span = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers.get("range", ""))
        if span:  # the header reads: Range: bytes=0-100000, then the rest if longer
            chunk = data[int(span[1]) : int(span[2]) + 1]
            return httpx.Response(206, content=chunk, headers={"Content-Length": str(len(chunk))})
        return httpx.Response(200, content=data, headers=headers)

    with intercepted(answer):
        yield state


def range_reads(sent: list[Any]) -> list[Any]:
    return [r for r in sent if r.method == "GET" and "range" in r.headers]


@pytest.mark.parametrize("parts", [1, 3])
def test_the_hub_counts_from_headers_read_with_range_requests(
    hub: dict[str, Any], parts: int, tmp_path: Path
) -> None:
    hub["files"] = repo_files(moe(), parts=parts)
    found = checkpoint.find(MODEL, None, 1, network=True, cache_dir=tmp_path / "empty")
    assert found is not None and found.files == parts and found.nbytes == nbytes(moe())
    assert found.experts.tensors == 12
    assert found.source == "Hugging Face Hub, safetensors metadata at main"
    reads = range_reads(hub["sent"])
    assert len(reads) == parts and all(r.headers["range"] == "bytes=0-100000" for r in reads)
    # each header read waits at most HF_HUB_ETAG_TIMEOUT for a connection or for bytes
    assert {r.extensions["timeout"]["read"] for r in reads} == {
        huggingface_hub.constants.HF_HUB_ETAG_TIMEOUT
    }


def test_the_hub_is_asked_for_the_profiles_revision(hub: dict[str, Any]) -> None:
    hub["files"] = repo_files(llama())
    found = checkpoint.from_hub(MODEL, "v1.1", 2)
    assert found is not None and found.source.endswith("at v1.1")
    assert all("/resolve/v1.1/" in str(r.url) for r in hub["sent"])


def test_a_header_longer_than_the_first_range_is_read_with_a_second(hub: dict[str, Any]) -> None:
    t = {f"model.layers.0.mlp.experts.{e}.w{i}.weight": ("BF16", [2, 2]) for e in range(900)
         for i in range(3)}  # fmt: skip
    hub["files"] = repo_files(t)
    found = checkpoint.from_hub(MODEL, None, 1)
    assert found is not None and found.experts.tensors == 2700
    assert len(range_reads(hub["sent"])) == 2


def test_a_cached_checkpoint_is_counted_without_a_request(
    hub: dict[str, Any], tmp_path: Path
) -> None:
    cache_snapshot(tmp_path, MAIN, repo_files(llama()), "main")
    found = checkpoint.find(MODEL, None, 2, network=True, cache_dir=tmp_path)
    assert found is not None and "cache" in found.source and hub["sent"] == []


def test_offline_or_without_network_the_hub_gets_no_request(
    hub: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hub["files"] = repo_files(llama())
    assert checkpoint.find(MODEL, None, 2, cache_dir=tmp_path) is None
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1
    assert checkpoint.find(MODEL, None, 2, network=True, cache_dir=tmp_path) is None
    assert hub["sent"] == []


def gated(request: Any) -> Any:
    return httpx.Response(401, headers={"X-Error-Code": "GatedRepo"}, request=request)


def private(request: Any) -> Any:
    return httpx.Response(401, headers={"X-Error-Code": "RepoNotFound"}, request=request)


def refused(request: Any) -> Any:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def stalled(request: Any) -> Any:
    raise httpx.ReadTimeout("The read operation timed out", request=request)


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (None, "no model.safetensors or model.safetensors.index.json"),  # not a safetensors repo
        (private, "a private repo needs HF_TOKEN"),
        (gated, "gated: accept its terms on huggingface.co, then set HF_TOKEN"),
        (refused, "ConnectError: [Errno 111] Connection refused"),
        (stalled, "ReadTimeout: The read operation timed out"),
    ],
)
def test_a_hub_error_is_one_line_saying_why(
    hub: dict[str, Any], fault: Callable[[Any], Any] | None, says: str
) -> None:
    hub["fault"] = fault
    with pytest.raises(Unreadable) as raised:
        checkpoint.find(MODEL, None, 2, network=True)
    message = str(raised.value)
    assert message.startswith(f"Hugging Face Hub, {MODEL}: ") and says in message, message
    assert "\n" not in message


def test_a_corrupt_header_on_the_hub_is_one_line(hub: dict[str, Any]) -> None:
    hub["files"] = {"model.safetensors": (2**40).to_bytes(8, "little") + b"{}"}
    with pytest.raises(Unreadable, match=r"^Hugging Face Hub, acme/moe-7b: \w+Error: ") as raised:
        checkpoint.from_hub(MODEL, None, 2)
    assert "\n" not in str(raised.value)


def test_summaries_compare_by_value() -> None:
    headers = {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}
    one = checkpoint.summarise({**headers, "__metadata__": {"format": "pt"}}, 1, "x", 1)
    assert one == Summary("x", 1, linear=checkpoint.Tally(1, 4, 8, 8, 0))


def test_the_hubs_progress_bar_stays_off_serve_checks_output(
    hub: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub.utils.tqdm import are_progress_bars_disabled

    hub["files"] = repo_files(moe(), parts=3)
    assert checkpoint.from_hub(MODEL, None, 1) is not None
    assert capfd.readouterr().err == ""
    assert not are_progress_bars_disabled()  # left as it was found, for other callers


@pytest.mark.parametrize(("offline", "expected"), [("1", "None"), ("0", "Unreadable")])
def test_hf_hub_offline_in_the_environment_keeps_find_off_the_network(
    tmp_path: Path, offline: str, expected: str
) -> None:
    # a fresh interpreter: huggingface_hub reads HF_HUB_OFFLINE once, when it is imported
    code = (
        "import huggingface_hub\n"
        "from huggingface_hub.utils import _http\n"
        "httpx = vars(_http).get('httpx2') or vars(_http)['httpx']\n"
        "sent = []\n"
        "answer = lambda request: sent.append(request) or httpx.Response(500)\n"
        "huggingface_hub.set_client_factory(\n"
        "    lambda: httpx.Client(transport=httpx.MockTransport(answer)))\n"
        "from openai_server.preflight import checkpoint\n"
        "try:\n"
        f"    print(checkpoint.find({MODEL!r}, None, 2, network=True), len(sent))\n"
        "except checkpoint.Unreadable:\n"
        "    print('Unreadable', len(sent))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": offline, "HF_HUB_CACHE": str(tmp_path)}
    env.pop("TRANSFORMERS_OFFLINE", None)  # huggingface_hub's other name for the same switch
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    said, requests = out.stdout.split()
    assert (said, int(requests) == 0) == (expected, offline == "1")


# ---- through `serve check`: where the weight figure comes from


LLAMA_CONFIG = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 32,
                "tie_word_embeddings": False}  # fmt: skip


def test_a_config_whose_cache_has_no_shards_is_counted_from_the_hub_with_network(
    hub: dict[str, Any], tmp_path: Path
) -> None:
    from openai_server.preflight import models

    config = json.dumps(LLAMA_CONFIG).encode()
    cache_snapshot(tmp_path, MAIN, {"config.json": config}, "main")  # config only, as `hf download`
    hub["files"] = repo_files(llama())
    offline = models.find(MODEL, cache_dir=tmp_path)
    assert offline is not None and offline.exact_weights is None
    assert offline.weights_source == "config.json"
    online = models.find(MODEL, cache_dir=tmp_path, network=True)
    assert online is not None and online.exact_weights is not None
    assert online.exact_weights.nbytes == nbytes(llama())
    assert online.weights_source == "Hugging Face Hub, safetensors metadata at main"


def test_a_hub_that_refuses_leaves_the_config_count_and_says_why(
    hub: dict[str, Any], tmp_path: Path
) -> None:
    from openai_server.preflight import models

    cache_snapshot(tmp_path, MAIN, {"config.json": json.dumps(LLAMA_CONFIG).encode()}, "main")
    hub["fault"] = lambda request: httpx.Response(401, headers={"X-Error-Code": "GatedRepo"})
    found = models.find(MODEL, cache_dir=tmp_path, network=True)
    assert found is not None and found.exact_weights is None
    assert found.weights_source.startswith("config.json (Hugging Face Hub, acme/moe-7b: ")


def test_serve_check_says_the_weights_came_from_the_safetensors_headers(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from openai_server.cli import app

    model = write_dir(tmp_path / "model", repo_files(llama()))
    (model / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    profile = tmp_path / "p.yaml"
    profile.write_text(f"model: {model}\ndtype: bfloat16\nmax_model_len: 1024\n")
    done = CliRunner().invoke(app, ["check", "-p", str(profile), "--gpu", "L4", "--json"])
    report = json.loads(done.stdout)
    # the headers' bytes, and vLLM's RoPE cache beside them (2048 positions x 16 dims, bf16)
    assert report["weights_bytes"] == nbytes(llama()) + 2048 * 16 * 2
    model_line = next(c for c in report["checks"] if c["name"] == "model")
    assert "weights from safetensors headers" in model_line["reason"]
