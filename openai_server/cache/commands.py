"""`serve cache pack | unpack | ls`: a cold start at warm speed, carried to another host.

`pack` makes sure a start of the profile compiled on this host (a rehearsal start, dummy weights,
through the real launcher, when this host has no record of one), then packs the cache entries that
start used. `unpack` checks the bundle against this host and restores it where vLLM and its
libraries look. `ls` says per profile what is cached here. No vLLM or torch import: versions come
from package metadata, the GPU from NVML.
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Annotated, Literal

import typer

from .. import loader
from ..cli_common import ProfileOpt, SetOpt, profile_ref
from ..errors import RefusedError, StartFailed
from ..launch.options import Timing
from . import bundle, index, locations, select
from . import manifest as mf

MiB = 1024**2


def this_host() -> mf.Host:
    """vLLM, torch and the first GPU NVML sees ("cpu" without one), without importing either."""
    from ..preflight import gpus
    from ..preflight.flags import installed_version

    vllm = installed_version(sys.executable)
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "none"
    hardware = gpus.detect()
    if hardware.gpus:
        g = hardware.gpus[0]
        device = mf.Device("gpu", g.name, "{}.{}".format(*g.compute_capability))
    else:
        device = mf.Device("cpu")
    return mf.Host(vllm[1] if vllm else "none", torch, device)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def cache_root() -> Path:
    from ..settings import settings

    return settings().cache_root


def compile_start(
    resolved: loader.Resolved, ready_timeout: float
) -> tuple[dict[str, list[str]], str]:
    """Run one rehearsal start of the profile; (part -> entries it used, the model path it
    loaded). The start is `serve rehearse`'s, so a later rehearsal here finds the same entries."""
    from ..deploy.compose import profile_yaml
    from ..rehearse import shape
    from ..rehearse.commands import rehearsal_profile
    from ..rehearse.run import free_port, one_start, read_log

    model_dir, _ = shape.build(resolved.profile)
    roots = locations.roots(os.environ)
    since = time.time() - 2  # filesystem timestamps may be coarser than the clock
    with tempfile.TemporaryDirectory(prefix="serve-cache-pack-") as tmp:
        workdir = Path(tmp)
        path = workdir / "profile.yaml"
        path.write_text(profile_yaml(rehearsal_profile(resolved.profile, model_dir, free_port())))
        start = one_start(path, workdir, cold=True, ready_timeout=ready_timeout)
        log = read_log(workdir / "launch-cold.log")
    if start.failure:
        raise StartFailed(f"cache pack: the start failed: {start.failure}")
    if start.compiled is None:
        raise RefusedError("cache pack: vLLM compiled nothing in this start (enforce_eager, or a "
                           "compilation mode of none): there is nothing to pack")  # fmt: skip
    return select.used_by_start(log, roots, since), str(model_dir)


def pack(profile: str | None, sets: list[str], output: Path, ready_timeout: float) -> None:
    resolved = loader.load(profile_ref(profile), sets=sets)
    prof = resolved.profile
    if prof.enforce_eager:
        raise RefusedError("cache pack: the profile sets enforce_eager: vLLM compiles nothing")
    dump = prof.model_dump(mode="json")
    host = this_host()
    roots = locations.roots(os.environ)
    digest = mf.profile_digest(dump)
    name = profile_ref(profile)
    known = index.find(index.load(cache_root()), digest, host.vllm)
    began = time.monotonic()
    if known and all((roots[p] / e).exists() for p, es in known.entries.items() for e in es):
        entries, model_path, how = known.entries, known.model_path, "cached here"
    else:
        entries, model_path = compile_start(resolved, ready_timeout)
        how = f"compiled by a start of {time.monotonic() - began:.1f} s"
        index.record(cache_root(), index.Record(name, digest, host.vllm, entries, model_path,
                                                now(), "pack"))  # fmt: skip
    if not entries:
        raise RefusedError(f"cache pack: the start of {name} used no cache entry under {roots}")
    packing = time.monotonic()
    files = bundle.files_of(roots, entries)
    manifest = mf.build(host, name, dump, entries, files, now(), model_path)
    bundle.write(output, manifest, roots)
    print(f"packed {name} ({how}): {len(files)} files, {manifest.total_bytes / MiB:.1f} MiB "
          f"-> {output} ({output.stat().st_size / MiB:.1f} MiB) in "
          f"{time.monotonic() - packing:.1f} s; vLLM {host.vllm}, torch {host.torch}, "
          f"{host.device.line()}")  # fmt: skip


def unpack(file: Path) -> None:
    began = time.monotonic()
    manifest = bundle.read_manifest(file)
    if reason := mf.refusal(manifest, this_host()):
        raise bundle.BundleRefused(f"cache unpack: {file}: {reason}")
    roots = locations.roots(os.environ)
    sizes = bundle.restore(file, manifest, roots)
    index.record(cache_root(), index.Record(
        manifest.profile, manifest.profile_digest, manifest.host.vllm, manifest.entries,
        manifest.model_path, now(), f"unpack {file}"))  # fmt: skip
    where = ", ".join(f"{p} {sizes[p] / MiB:.1f} MiB -> {roots[p]}" for p in sorted(sizes))
    print(f"restored {manifest.profile} ({manifest.profile_digest}, packed {manifest.created}): "
          f"{where} in {time.monotonic() - began:.1f} s")  # fmt: skip
    if manifest.model_path and not Path(manifest.model_path).exists():
        # vllm/config/model.py compute_hash keeps `model` (the path or hub id) among its factors
        print(f"note: the packed start loaded its model from {manifest.model_path}, which is not "
              "here; vLLM hashes that path into its cache key, so a start here finds these "
              "entries only when it loads its model from the same path (SERVE_CACHE_DIR for a "
              "rehearsal's)")  # fmt: skip


def ls() -> None:
    roots = locations.roots(os.environ)
    records = index.load(cache_root())
    from ..preflight.flags import installed_version

    here = installed_version(sys.executable)
    vllm = here[1] if here else "none"
    if not records:
        print(f"no profile's compile cache is recorded here (vLLM cache: {roots['vllm']})")
    for r in records:
        missing = [f"{p}/{e}" for p, es in r.entries.items() for e in es
                   if not (roots[p] / e).exists()]  # fmt: skip
        size = sum(f.stat().st_size for p, es in r.entries.items() for e in es
                   for f in select.entry_files(roots[p], e))  # fmt: skip
        if r.vllm != vllm:
            verdict = f"a start would compile: recorded for vLLM {r.vllm}, this host has {vllm}"
        elif missing:
            verdict = f"a start would compile: {len(missing)} entries gone ({missing[0]}, ...)"
        elif r.model_path and not Path(r.model_path).exists():
            verdict = f"a start would compile: its model path {r.model_path} is not here"
        else:
            # vLLM hashes the model path into its key: another path is another cache entry
            where = f" loading its model from {r.model_path}" if r.model_path else ""
            verdict = f"a start{where} finds its compile cache here"
        print(f"{r.profile} ({r.digest}, {r.source}, {r.created}): {size / MiB:.1f} MiB; "
              f"{verdict}")  # fmt: skip


def cache_cmd(
    action: Annotated[
        Literal["pack", "unpack", "ls"],
        typer.Argument(help="pack: write a bundle; unpack: restore one; ls: what is cached here"),
    ],
    file: Annotated[Path | None, typer.Argument(help="unpack: the bundle file")] = None,
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="pack: the bundle file to write")
    ] = None,
    ready_timeout: Annotated[
        float, typer.Option(help="pack: seconds to ready for the start it may run")
    ] = Timing().ready_timeout,
) -> None:
    """Pack what a start of a profile compiled into one file; restore it; list what is cached."""
    if action == "pack":
        if output is None:
            raise typer.BadParameter("pack needs -o FILE", param_hint="'--output'")
        pack(profile, set_ or [], output, ready_timeout)
    elif action == "unpack":
        if file is None:
            raise typer.BadParameter("unpack needs the bundle FILE", param_hint="'FILE'")
        unpack(file)
    else:
        ls()
