"""Packing and restoring a bundle: all or nothing, whatever the file holds (crafted in tmp_path)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_server.cache import bundle, locations, select
from openai_server.cache import manifest as mf
from tests.conftest import ROOT, free_port

HOST = mf.Host("0.32.0", "2.13.0+cpu", mf.Device("cpu"))
AOT = "torch_compile_cache/torch_aot_compile/h1"
LOG = f"""(Worker pid=1) INFO [decorators.py:743] [backbone] saved AOT compiled function to \
{{root}}/{AOT}/rank_0_0/model
(Worker pid=1) WARNING [decorators.py:333] [backbone] Compiling model again due to a load failure \
from {{root}}/torch_compile_cache/torch_aot_compile/h2/rank_0_0/model, reason: 'x'
(Worker pid=1) INFO [backends.py:1105] Using cache directory: {{root}}/torch_compile_cache/h3/\
rank_0_0/backbone for vLLM's torch.compile
"""


def roots(home: Path) -> dict[str, Path]:
    return locations.roots({"HOME": str(home), "USER": "u",
                            "TORCHINDUCTOR_CACHE_DIR": str(home / "inductor")})  # fmt: skip


def a_cache(home: Path) -> dict[str, Path]:
    """A vLLM cache as one start leaves it, beside an older start's entry."""
    r = roots(home)
    for relative, data in {f"{AOT}/rank_0_0/model": b"graph" * 100,
                           f"{AOT}/inductor_cache/ab/k.so": b"\x7fELF" + bytes(300),
                           "modelinfos/phi3.json": b"{}",
                           "torch_compile_cache/torch_aot_compile/old/rank_0_0/model": b"o"}.items():  # fmt: skip
        (r["vllm"] / relative).parent.mkdir(parents=True, exist_ok=True)
        (r["vllm"] / relative).write_bytes(data)
    return r


def pack(home: Path, target: Path) -> mf.Manifest:
    r = a_cache(home)
    entries = {"vllm": [AOT, "modelinfos/phi3.json"]}
    m = mf.build(HOST, "tiny-cpu", {"model": "m"}, entries, bundle.files_of(r, entries), "now")
    bundle.write(target, m, r)
    return m


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_a_bundle_restores_the_entries_of_its_start_only(tmp_path: Path) -> None:
    m = pack(tmp_path / "one", tmp_path / "b.tar.gz")
    assert {f.path.split("/rank")[0].split("/inductor")[0] for f in m.files} == {
        AOT, "modelinfos/phi3.json"}  # fmt: skip
    r2 = roots(tmp_path / "two")
    assert bundle.restore(tmp_path / "b.tar.gz", bundle.read_manifest(tmp_path / "b.tar.gz"), r2)
    assert (r2["vllm"] / AOT / "rank_0_0" / "model").read_bytes() == b"graph" * 100
    assert not (r2["vllm"] / "torch_compile_cache/torch_aot_compile/old").exists()
    assert not [p for p in listing(r2["vllm"]) if ".serve-unpack" in p]


def test_an_existing_entry_is_replaced_not_merged(tmp_path: Path) -> None:
    pack(tmp_path / "one", tmp_path / "b.tar.gz")
    r2 = roots(tmp_path / "two")
    stale = r2["vllm"] / AOT / "stale-file"
    stale.parent.mkdir(parents=True)
    stale.write_text("x")
    bundle.restore(tmp_path / "b.tar.gz", bundle.read_manifest(tmp_path / "b.tar.gz"), r2)
    assert not stale.exists() and (r2["vllm"] / AOT / "rank_0_0" / "model").exists()


def test_a_truncated_bundle_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    pack(tmp_path / "one", tmp_path / "b.tar.gz")
    data = (tmp_path / "b.tar.gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    r2 = roots(tmp_path / "two")
    with pytest.raises(bundle.BundleRefused, match=r"corrupt or truncated|missing"):
        bundle.restore(cut, bundle.read_manifest(cut), r2)
    assert listing(r2["vllm"]) == []
    assert not (tmp_path / "two").exists()  # nor the folders it made to restore into


def test_a_file_that_is_no_archive_is_refused_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("not a bundle\n")
    with pytest.raises(bundle.BundleRefused) as caught:
        bundle.read_manifest(junk)
    assert "is not a bundle" in str(caught.value) and "\n" not in str(caught.value)


def test_a_file_that_does_not_match_its_checksum_is_refused(tmp_path: Path) -> None:
    m = pack(tmp_path / "one", tmp_path / "b.tar.gz")
    f = m.files[0]
    lying = mf.Manifest(**{**m.__dict__, "files": [mf.File(f.part, f.path, f.size, "0" * 64),
                                                   *m.files[1:]]})  # fmt: skip
    crafted = craft(tmp_path / "c.tar.gz", lying, tmp_path / "one")
    with pytest.raises(bundle.BundleRefused, match="checksum"):
        bundle.restore(crafted, bundle.read_manifest(crafted), roots(tmp_path / "two"))
    assert listing(roots(tmp_path / "two")["vllm"]) == []


def craft(
    target: Path, m: mf.Manifest, home: Path, extra: tuple[tarfile.TarInfo, ...] = ()
) -> Path:
    """A bundle written by hand: a lying manifest, or members serve would never write."""
    r = roots(home)
    with tarfile.open(target, "w:gz") as tar:
        data = m.to_json().encode()
        info = tarfile.TarInfo(mf.NAME)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for f in m.files:
            tar.add(r[f.part] / f.path, arcname=f"parts/{f.part}/{f.path}")
        for member in extra:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return target


@pytest.mark.parametrize(
    ("name", "kind", "says"),
    [
        ("parts/vllm/../../../escaped", tarfile.REGTYPE, "unsafe member|not in the manifest"),
        ("parts/vllm/link", tarfile.SYMTYPE, "unsafe member"),
        ("elsewhere/x", tarfile.REGTYPE, "unexpected member"),
    ],
)
def test_a_crafted_member_cannot_write_outside_the_cache(
    tmp_path: Path, name: str, kind: bytes, says: str
) -> None:
    m = pack(tmp_path / "one", tmp_path / "b.tar.gz")
    member = tarfile.TarInfo(name)
    member.type = kind
    if kind == tarfile.SYMTYPE:
        member.linkname = "/etc/passwd"
    else:
        member.size = 1
    crafted = craft(tmp_path / "c.tar.gz", m, tmp_path / "one", (member,))
    r2 = roots(tmp_path / "two")
    with pytest.raises(bundle.BundleRefused, match=says):
        bundle.restore(crafted, bundle.read_manifest(crafted), r2)
    assert listing(r2["vllm"]) == [] and not (tmp_path / "escaped").exists()


def test_the_start_is_known_by_the_entries_its_log_names(tmp_path: Path) -> None:
    r = a_cache(tmp_path)
    log = LOG.format(root=r["vllm"])
    assert select.named_in_log(log, r["vllm"]) == {
        AOT, "torch_compile_cache/torch_aot_compile/h2", "torch_compile_cache/h3"}  # fmt: skip
    old = time.time() - 3600
    os.utime(r["vllm"] / "torch_compile_cache/torch_aot_compile/old/rank_0_0/model", (old, old))
    used = select.used_by_start(log, r, time.time() - 60)
    # h2 and h3 are named but absent here; "old" was neither named nor written by this start
    assert used == {"vllm": ["modelinfos/phi3.json", AOT]}


def test_unpack_of_another_vllms_bundle_is_one_line_and_exit_4(tmp_path: Path) -> None:
    m = pack(tmp_path / "one", tmp_path / "b.tar.gz")
    other = mf.Manifest(**{**m.__dict__, "host": mf.Host("0.1.0", "2.13.0+cpu", HOST.device)})
    crafted = craft(tmp_path / "c.tar.gz", other, tmp_path / "one")
    home = tmp_path / "two"
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("VLLM_CACHE_ROOT", None)
    out = subprocess.run([sys.executable, "-m", "openai_server", "cache", "unpack", str(crafted)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)  # fmt: skip
    assert out.returncode == 4, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "packed with vLLM 0.1.0" in lines[0], out.stderr
    assert not (home / ".cache" / "vllm").exists()


def unpack_cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("VLLM_CACHE_ROOT", None)
    return subprocess.run([sys.executable, "-m", "openai_server", "cache", "unpack", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)  # fmt: skip


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server (the standard library's) serving a directory."""
    served = tmp_path / "served"
    served.mkdir()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(served)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield served, f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


def test_a_bundle_is_restored_from_a_url(tmp_path: Path, http_dir: tuple[Path, str]) -> None:
    served, url = http_dir
    pack(tmp_path / "one", served / "b.tar.gz")
    out = unpack_cli([f"{url}/b.tar.gz?X-Amz-Signature=secret"], tmp_path / "two")
    assert out.returncode == 0, out.stderr
    assert "restored tiny-cpu" in out.stdout
    assert (tmp_path / "two" / ".cache" / "vllm" / AOT / "rank_0_0" / "model").is_file()


def test_best_effort_turns_a_bundle_that_cannot_be_used_into_one_line_and_exit_0(
    tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    _, url = http_dir
    home = tmp_path / "two"
    out = unpack_cli([f"{url}/missing.tar.gz?sig=secret"], home)
    assert out.returncode == 4 and "download failed" in out.stderr, out.stderr
    assert "secret" not in out.stderr  # a presigned URL's signature stays out of logs
    out = unpack_cli([f"{url}/missing.tar.gz", "--best-effort"], home)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("serve: cache bundle not used: ")
    assert "the start compiles" in lines[0]
    m = pack(tmp_path / "one", tmp_path / "b.tar.gz")
    other = mf.Manifest(**{**m.__dict__, "host": mf.Host("0.1.0", "2.13.0+cpu", HOST.device)})
    crafted = craft(tmp_path / "c.tar.gz", other, tmp_path / "one")
    out = unpack_cli([str(crafted), "--best-effort"], home)
    assert out.returncode == 0 and "packed with vLLM 0.1.0" in out.stdout, out.stderr
    assert not (home / ".cache" / "vllm").exists()
