"""The bundle's manifest and where caches live: pure functions, table-tested."""

from __future__ import annotations

from pathlib import Path

import pytest

from openai_server.cache import locations
from openai_server.cache import manifest as mf

CPU = mf.Host("0.32.0", "2.13.0+cpu", mf.Device("cpu"))
H200 = mf.Host("0.32.0", "2.13.0", mf.Device("gpu", "NVIDIA H200", "9.0"))


def manifest(host: mf.Host = CPU, **kw: object) -> mf.Manifest:
    files = [
        mf.File("vllm", "torch_compile_cache/torch_aot_compile/abc/rank_0_0/model", 3, "0" * 64)
    ]
    entries = {"vllm": ["torch_compile_cache/torch_aot_compile/abc"]}
    made = mf.build(host, "tiny-cpu", {"model": "m", "dtype": "float32"}, entries, files,
                    "2026-12-02T15:00:00+00:00", "/models/m")  # fmt: skip
    return mf.Manifest(**{**made.__dict__, **kw})


@pytest.mark.parametrize(
    ("bundle", "here", "says"),
    [
        (CPU, CPU, None),
        (CPU, mf.Host("0.31.1", "2.13.0+cpu", mf.Device("cpu")), "packed with vLLM 0.32.0"),
        (CPU, mf.Host("0.32.0", "2.12.0+cpu", mf.Device("cpu")), "packed with torch 2.13.0+cpu"),
        (CPU, mf.Host("0.32.0", "2.13.0+cpu", H200.device), "packed on cpu, this host runs on"),
        (H200, mf.Host("0.32.0", "2.13.0", mf.Device("gpu", "NVIDIA H100", "9.0")), None),
        (H200, mf.Host("0.32.0", "2.13.0", mf.Device("gpu", "NVIDIA L4", "8.9")), "sm 8.9"),
    ],
)
def test_another_vllm_torch_or_architecture_is_refused_in_one_line(
    bundle: mf.Host, here: mf.Host, says: str | None
) -> None:
    line = mf.refusal(manifest(bundle), here)
    if says is None:
        assert line is None
    else:
        assert line is not None and says in line and "\n" not in line


def test_manifest_round_trips_through_json() -> None:
    m = manifest(H200)
    assert mf.parse(m.to_json()) == m
    assert m.sizes == {"vllm": 3} and m.total_bytes == 3


def test_a_path_bound_part_restored_under_another_root_is_named() -> None:
    m = manifest(
        H200,
        entries={"vllm": ["modelinfos/a.json"], "flashinfer": ["0.4.1"]},
        roots={"vllm": "/home/a/.cache/vllm", "flashinfer": "/home/a/.cache/flashinfer"},
    )
    assert mf.parse(m.to_json()) == m
    here = {"vllm": "/root/.cache/vllm", "flashinfer": "/root/.cache/flashinfer"}
    # vLLM's entries are found wherever its root is; FlashInfer's builds name their paths
    assert mf.moved(m, here) == [
        "flashinfer: packed at /home/a/.cache/flashinfer, here /root/.cache/flashinfer"
    ]
    assert mf.moved(m, {**here, "flashinfer": "/home/a/.cache/flashinfer"}) == []
    assert mf.moved(manifest(H200), here) == []  # no FlashInfer part, or an older bundle


@pytest.mark.parametrize("text", ["", "{}", "[1]", '{"format": 99}', '{"format": 1, "host": 3}'])
def test_an_unreadable_manifest_is_a_manifest_error(text: str) -> None:
    with pytest.raises(mf.ManifestError):
        mf.parse(text)


@pytest.mark.parametrize(
    ("entry", "path", "says"),
    [
        ("torch_compile_cache/x", "torch_compile_cache/x/f", None),
        ("torch_compile_cache/x", "../../etc/passwd", "unsafe path"),
        ("torch_compile_cache/x", "/etc/passwd", "unsafe path"),
        ("../x", "../x/f", "unsafe entry"),
        ("torch_compile_cache/x", "modelinfos/y.json", "belongs to no entry"),
    ],
)
def test_a_path_leaving_its_root_is_refused(entry: str, path: str, says: str | None) -> None:
    m = manifest(entries={"vllm": [entry]}, files=[mf.File("vllm", path, 1, "0" * 64)])
    line = mf.check_paths(m, locations.PARTS)
    assert (line is None) if says is None else (line is not None and says in line)


def test_hashed_settings_keep_what_enters_vllms_hash() -> None:
    dump = {"model": "m", "dtype": "half", "port": 8000, "seed": 3, "max_model_len": None,
            "env": {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "2"}}  # fmt: skip
    assert mf.hashed_settings(dump) == {"model": "m", "dtype": "half",
                                        "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}}  # fmt: skip
    assert mf.profile_digest(dump) == mf.profile_digest(dict(reversed(dump.items())))


def test_every_hashed_key_is_a_profile_key() -> None:
    from openai_server.profile import Profile

    assert set(mf.HASHED_KEYS) <= set(Profile.model_fields)


def test_each_root_honours_its_variable_and_its_default(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path), "USER": "u"}
    assert locations.root("vllm", home) == tmp_path / ".cache" / "vllm"
    assert locations.root("vllm", {**home, "XDG_CACHE_HOME": "/x"}) == Path("/x/vllm")
    assert locations.root("vllm", {**home, "VLLM_CACHE_ROOT": "/v"}) == Path("/v")
    assert locations.root("triton", home) == tmp_path / ".triton" / "cache"
    assert locations.root("triton", {**home, "TRITON_CACHE_DIR": "/t"}) == Path("/t")
    assert locations.root("inductor", home) == tmp_path / ".cache" / "torchinductor"
    assert locations.root("inductor", {**home, "TORCHINDUCTOR_CACHE_DIR": "/i"}) == Path("/i")
    assert locations.root("flashinfer", home) == tmp_path / ".cache" / "flashinfer"
    assert locations.root("nv", home) == tmp_path / ".nv" / "ComputeCache"


@pytest.mark.parametrize(
    ("part", "relative", "entry"),
    [
        ("vllm", "torch_compile_cache/torch_aot_compile/h/rank_0_0/model",
         "torch_compile_cache/torch_aot_compile/h"),
        ("vllm", "torch_compile_cache/h2/rank_0_0/backbone/x", "torch_compile_cache/h2"),
        ("vllm", "modelinfos/a.json", "modelinfos/a.json"),
        ("vllm", "torch_compile_cache", None),
        ("vllm", "other/file", None),
        ("triton", "KEY/kernel.cubin", "KEY"),
        ("inductor", "fxgraph/fy/KEY/x", "fxgraph/fy/KEY"),
        ("inductor", "aotautograd/KEY/y", "aotautograd/KEY"),
        ("inductor", "triton/0/KEY/k.cubin", "triton/0/KEY"),
        ("inductor", "ca/cKEY.main.so", "ca/cKEY.main.so"),
        ("inductor", "locks/cKEY.lock", None),
        ("inductor", "fxgraph", None),
    ],
)  # fmt: skip
def test_an_entry_is_one_starts_unit_of_its_cache(part: str, relative: str, entry: str) -> None:
    assert locations.entry_of(part, relative) == entry


def test_profiles_that_compile_alike_share_a_compile_digest() -> None:
    base = {"model": "m", "dtype": "float16", "port": 8000, "description": "a"}
    same = {**base, "port": 9000, "description": "b", "sampling": {"temperature": 0.1}}
    assert mf.compile_digest(base) == mf.compile_digest(same)
    assert mf.compile_digest(base) != mf.compile_digest({**base, "dtype": "bfloat16"})
    assert mf.profile_digest(base) != mf.profile_digest(same)


def test_every_serving_only_key_is_a_profile_key() -> None:
    from openai_server.profile import Profile

    assert set(mf.SERVING_ONLY) <= set(Profile.model_fields)
