"""`serve cache pack | unpack | ls`: a cold start at warm speed, carried to another host.

`pack` makes sure a start of the profile compiled on this host (a start with dummy weights through
the real launcher, loading the model by the profile's name where its config is here, when this host
has no record of one), then packs the cache entries that start used. `unpack` checks the bundle
against this host and restores it where vLLM and its libraries look. `ls` says per profile what is
cached here. No vLLM or torch import: versions come from package metadata, the GPU from NVML.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from . import loader, render
from .cache import bundle, index, locations, select
from .cache import manifest as mf
from .cli_common import ProfileOpt, SetOpt, profile_ref
from .errors import RefusedError, StartFailed
from .launch.options import Timing
from .profile import Profile
from .profile_values import names_a_path

MiB = 1024**2


def this_host() -> mf.Host:
    """vLLM, torch and the first GPU NVML sees ("cpu" without one), without importing either."""
    from .preflight import gpus
    from .preflight.flags import installed_version

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


def cache_root() -> Path:
    from .settings import settings

    return settings().cache_root


def start_profile(prof: Profile, port: int) -> tuple[Profile, str]:
    """The profile the pack's start runs (dummy weights), and the model it loads.

    vLLM keys its compile cache by the model as named and its config as loaded (vllm/config/
    model.py `compute_hash` keeps `model` and `hf_config` among its factors; the load format is
    not one, vllm/config/load.py), so where this host has the profile's own config (the model's
    directory, or the Hugging Face cache for a hub id) the start loads the profile's model itself,
    with dummy weights and a generated tokenizer (not a factor either): the bundle then serves a
    deployment that loads the real weights under the same name. Elsewhere the rehearsal's
    generated copy stands in, and only a rehearsal finds vLLM's part of the bundle (the kernel
    caches are keyed by content and serve any start)."""
    from .rehearse import shape
    from .rehearse.commands import rehearsal_profile

    model_dir, _ = shape.build(prof)
    rehearsal = rehearsal_profile(prof, model_dir, port)
    if shape.own_config(prof) is None:
        return rehearsal, str(model_dir)
    update: dict[str, Any] = {"model": prof.model, "revision": prof.revision,
                              "tokenizer": str(model_dir)}  # fmt: skip
    if not Path(prof.model).expanduser().is_dir():  # a hub id, found in the cache: stay offline
        update["env"] = {**prof.env, "HF_HUB_OFFLINE": "1"}
    return rehearsal.model_copy(update=update), prof.model


def compile_start(
    resolved: loader.Resolved, ready_timeout: float
) -> tuple[dict[str, list[str]], str, float]:
    """Run one start of the profile with dummy weights (`start_profile`); (part -> entries it
    used, the model path it loaded, its seconds to ready)."""
    from .deploy.compose import profile_yaml
    from .rehearse.run import free_port, one_start, read_log

    roots = locations.roots(os.environ)
    prof, model_path = start_profile(resolved.profile, free_port())
    since = time.time() - 2  # filesystem timestamps may be coarser than the clock
    with tempfile.TemporaryDirectory(prefix="serve-cache-pack-") as tmp:
        workdir = Path(tmp)
        path = workdir / "profile.yaml"
        path.write_text(profile_yaml(prof))
        start = one_start(path, workdir, cold=True, ready_timeout=ready_timeout)
        log = read_log(workdir / "launch-cold.log")
    if start.failure:
        raise StartFailed(f"cache pack: the start failed: {start.failure}")
    if start.compiled is None:
        raise RefusedError("cache pack: vLLM compiled nothing in this start (enforce_eager, or a "
                           "compilation mode of none): there is nothing to pack")  # fmt: skip
    ready = start.seconds_to_ready or 0.0  # set: a start without it failed, raised above
    return select.used_by_start(log, roots, since), model_path, ready


def pack(profile: str | None, sets: list[str], output: Path, ready_timeout: float) -> None:
    resolved = loader.load(profile_ref(profile), sets=sets)
    prof = resolved.profile
    if prof.enforce_eager:
        raise RefusedError("cache pack: the profile sets enforce_eager: vLLM compiles nothing")
    dump = prof.model_dump(mode="json")
    host = this_host()
    roots = locations.roots(os.environ)
    digest = mf.compile_digest(dump)
    name = profile_ref(profile)
    known = index.find(index.load(cache_root()), digest, host.vllm)
    began = time.monotonic()
    if (known and all((roots[p] / e).exists() for p, es in known.entries.items() for e in es)
            and serves_deployment(known, prof)):  # fmt: skip
        entries, model_path = known.entries, known.model_path
        by_serve = known.source in ("launch", "rehearse")
        how = f"recorded by serve {known.source}, {known.created}" if by_serve else "cached here"
    else:
        entries, model_path, ready = compile_start(resolved, ready_timeout)
        how = f"compiled by a start of {time.monotonic() - began:.1f} s, ready in {ready:.1f} s"
        index.record(cache_root(), index.Record(name, digest, host.vllm, entries, model_path,
                                                index.now(), "pack"))  # fmt: skip
    if not entries:
        raise RefusedError(f"cache pack: the start of {name} used no cache entry under {roots}")
    packing = time.monotonic()
    files = bundle.files_of(roots, entries)
    manifest = mf.build(host, name, dump, entries, files, index.now(), model_path,
                        {p: str(r) for p, r in roots.items()})  # fmt: skip
    bundle.write(output, manifest, roots)
    print(f"packed {name} ({how}): {len(files)} files, {manifest.total_bytes / MiB:.1f} MiB "
          f"-> {output} ({output.stat().st_size / MiB:.1f} MiB) in "
          f"{time.monotonic() - packing:.1f} s; vLLM {host.vllm}, torch {host.torch}, "
          f"{host.device.line()}")  # fmt: skip
    if select.graphs_missed(entries, model_path, render.model_path(prof)):
        fetch = (f"put its config.json in {prof.model}" if names_a_path(prof.model)
                 else f"`hf download {prof.model} config.json` here")  # fmt: skip
        print(f"note: this host has no config.json of {prof.model}, so the start loaded a "
              f"generated copy ({model_path}); vLLM keys its compile cache by the model's name "
              f"and config, so a deployment loading {prof.model} compiles its graphs again (the "
              f"kernel caches still serve it): {fetch} and pack again")  # fmt: skip


def serves_deployment(record: index.Record, prof: Profile) -> bool:
    """Whether a recorded start's entries serve a deployment of `prof` as well as a pack's own
    start would: it loaded the profile's own model, or its vLLM entries are keyed by content
    only, or this host has no config of the model (the pack's start would load a copy too)."""
    from .rehearse import shape

    return (not select.graphs_missed(record.entries, record.model_path, render.model_path(prof))
            or shape.own_config(prof) is None)  # fmt: skip


def unpack(source: str, best_effort: bool = False) -> None:
    """Restore the bundle at `source` (a file, or an http(s) URL fetched first). `best_effort`
    (a deployment's init step): a bundle that cannot be used is one line and exit 0, and the
    start compiles as it would have without one; anything half written is still never left."""
    try:
        if bundle.is_url(source):
            with tempfile.TemporaryDirectory(prefix="serve-cache-bundle-") as tmp:
                _unpack(download(source, Path(tmp) / "bundle.tar.gz"))
        else:
            _unpack(Path(source))
    except RefusedError as e:
        if not best_effort:
            raise
        print(f"serve: cache bundle not used: {e}; the start compiles what it needs")


def download(url: str, to: Path) -> Path:
    """The bundle at `url`, streamed to `to`; a failure is one line naming the URL."""
    import httpx

    shown = url.split("?")[0]  # a presigned URL's signature (its query) is a secret
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as r:
            r.raise_for_status()
            with to.open("wb") as f:
                for chunk in r.iter_bytes(bundle.CHUNK):
                    f.write(chunk)
    except httpx.HTTPStatusError as e:
        why = f"HTTP {e.response.status_code}"
    except (httpx.HTTPError, OSError) as e:
        why = f"{type(e).__name__}: {str(e).replace(url, shown)}"
    else:
        return to
    raise bundle.BundleRefused(f"cache unpack: {shown}: download failed ({why})")


def _unpack(file: Path) -> None:
    began = time.monotonic()
    manifest = bundle.read_manifest(file)
    if reason := mf.refusal(manifest, this_host()):
        raise bundle.BundleRefused(f"cache unpack: {file}: {reason}")
    roots = locations.roots(os.environ)
    sizes = bundle.restore(file, manifest, roots)
    index.record(cache_root(), index.Record(
        manifest.profile, manifest.compile_digest or manifest.profile_digest, manifest.host.vllm,
        manifest.entries,
        manifest.model_path, index.now(), f"unpack {file}"))  # fmt: skip
    where = ", ".join(f"{p} {sizes[p] / MiB:.1f} MiB -> {roots[p]}" for p in sorted(sizes))
    print(f"restored {manifest.profile} ({manifest.profile_digest}, packed {manifest.created}): "
          f"{where} in {time.monotonic() - began:.1f} s")  # fmt: skip
    if elsewhere := mf.moved(manifest, {p: str(r) for p, r in roots.items()}):
        print(f"note: {'; '.join(elsewhere)}: these builds name the paths they were made at, so "
              "a start here may build them again; pack where the caches lie as on the hosts you "
              "deploy to (in the image: HOME=/root)")  # fmt: skip
    if select.keyed_by_model_path(manifest.entries) and select.model_absent(manifest.model_path):
        # vllm/config/model.py compute_hash keeps `model` (the path or hub id) among its factors
        print(f"note: the packed start loaded its model from {manifest.model_path}, which is not "
              "here; vLLM hashes that path into its cache key, so a start here finds these "
              "entries only when it loads its model from the same path (SERVE_CACHE_DIR for a "
              "rehearsal's)")  # fmt: skip


def ls() -> None:
    roots = locations.roots(os.environ)
    records = index.load(cache_root())
    from .preflight.flags import installed_version

    here = installed_version(sys.executable)
    vllm = here[1] if here else "none"
    if not records:
        print(f"no profile's compile cache is recorded here (vLLM cache: {roots['vllm']})")
    for r in records:
        missing = [f"{p}/{e}" for p, es in r.entries.items() for e in es
                   if not (roots[p] / e).exists()]  # fmt: skip
        size = sum(f.stat().st_size for p, es in r.entries.items() for e in es
                   for f in select.entry_files(roots[p], e))  # fmt: skip
        keyed = select.keyed_by_model_path(r.entries)
        if r.vllm != vllm:
            verdict = f"a start would compile: recorded for vLLM {r.vllm}, this host has {vllm}"
        elif missing:
            verdict = f"a start would compile: {len(missing)} entries gone ({missing[0]}, ...)"
        elif keyed and select.model_absent(r.model_path):
            verdict = f"a start would compile: its model path {r.model_path} is not here"
        else:
            # vLLM hashes the model path into its key: another path is another cache entry
            where = f" loading its model from {r.model_path}" if keyed and r.model_path else ""
            verdict = f"a start{where} finds its compile cache here"
        print(f"{r.profile} ({r.digest}, {r.source}, {r.created}): {size / MiB:.1f} MiB; "
              f"{verdict}")  # fmt: skip


def cache_cmd(
    action: Annotated[
        Literal["pack", "unpack", "ls"],
        typer.Argument(help="pack: write a bundle; unpack: restore one; ls: what is cached here"),
    ],
    file: Annotated[
        str | None, typer.Argument(help="unpack: the bundle, a file or an http(s) URL")
    ] = None,
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="pack: the bundle file to write")
    ] = None,
    ready_timeout: Annotated[
        float, typer.Option(help="pack: seconds to ready for the start it may run")
    ] = Timing().ready_timeout,
    best_effort: Annotated[
        bool,
        typer.Option(
            help="unpack: a bundle that cannot be used (another vLLM or GPU, corrupt, not "
            "downloaded) is one line and exit 0: a deployment's init step"
        ),
    ] = False,
) -> None:
    """Pack what a start of a profile compiled into one file; restore it; list what is cached."""
    if action == "pack":
        if output is None:
            raise typer.BadParameter("pack needs -o FILE", param_hint="'--output'")
        pack(profile, set_ or [], output, ready_timeout)
    elif action == "unpack":
        if file is None:
            raise typer.BadParameter("unpack needs the bundle FILE", param_hint="'FILE'")
        unpack(file, best_effort)
    else:
        ls()
