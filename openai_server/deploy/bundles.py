"""`serve deploy --cache-bundle`: whether the target can restore the bundle, and whether the
bundle is worth restoring there. Checked before a file is written, each refusal one line.

A bundle is only read by a start of the same vLLM release and the same compile settings (its
manifest: cache/manifest.py); one for another image or another profile would be shipped to every
pod and never used, so it is refused here rather than found out in a pod's log.
"""

from __future__ import annotations

from pathlib import Path

from .. import render
from ..cache import bundle as bundle_file
from ..cache import manifest as mf
from ..cache import select
from ..errors import RefusedError
from ..profile import Profile

# The targets with a step that restores a bundle before the server starts: the image's
# entrypoint (compose, hf-space: SERVE_CACHE_BUNDLE) or an init container (k8s).
TARGETS = ("compose", "k8s", "hf-space")


def check(source: str, profile: Profile, target: str, image_vllm: str) -> str | None:
    """Refuses a bundle the target cannot restore or no start of it would read; a note (to
    show) where only part of it will be read."""
    if target not in TARGETS:
        raise RefusedError(f"deploy --cache-bundle: --target {target} has no step that restores "
                           f"it; fix: --target {', '.join(TARGETS)}")  # fmt: skip
    if bundle_file.is_url(source):
        return None  # read by the pod; `serve cache unpack --best-effort` checks it there
    if target == "k8s":
        raise RefusedError(f"deploy --cache-bundle {source}: a pod cannot read a file of this "
                           "machine; fix: serve it over https (object storage, a presigned URL) "
                           "and give the URL")  # fmt: skip
    path = Path(source)
    if not path.is_file():
        raise RefusedError(f"deploy --cache-bundle {source}: no such file")
    manifest = bundle_file.read_manifest(path)  # a corrupt file: BundleRefused, one line
    if not _same_release(manifest.host.vllm, image_vllm):
        raise RefusedError(f"deploy --cache-bundle {source}: packed with vLLM "
                           f"{manifest.host.vllm}, the image runs {image_vllm} "
                           "(--vllm-version): vLLM would compile anyway; fix: pack in the image "
                           "you deploy")  # fmt: skip
    wanted = mf.hashed_settings(profile.model_dump(mode="json"))
    if manifest.hashed_settings != wanted:
        differ = sorted(k for k in {*wanted, *manifest.hashed_settings}
                        if wanted.get(k) != manifest.hashed_settings.get(k))  # fmt: skip
        k = differ[0]
        raise RefusedError(f"deploy --cache-bundle {source}: packed for {k}="
                           f"{manifest.hashed_settings.get(k)}, the profile has {k}={wanted.get(k)}"
                           f" ({len(differ)} compile setting(s) differ): vLLM would compile "
                           "anyway; fix: `serve cache pack` this profile")  # fmt: skip
    return model_note(source, manifest, profile)


def model_note(source: str, manifest: mf.Manifest, profile: Profile) -> str | None:
    """vLLM keys its graphs by the model as named (vllm/config/model.py compute_hash): a bundle
    whose start loaded another name (a rehearsal's generated copy) still brings the kernels,
    which are most of a cold start on a GPU, but not the graphs. Said, not refused."""
    loads = render.model_path(profile)
    missed = select.graphs_missed(manifest.entries, manifest.model_path, loads)
    if not manifest.model_path or not missed:  # an old bundle names no model: nothing to say
        return None
    return (f"deploy --cache-bundle {source}: its start loaded {manifest.model_path}, this "
            f"deployment loads {loads}: vLLM keys its graphs by the model's name, so they "
            "compile again (the kernel caches in it still serve the start); fix: `serve cache "
            f"pack` where {profile.model}'s config.json is")  # fmt: skip


def _same_release(packed: str, image: str) -> bool:
    """--vllm-version may name a release line (0.26) or a release (0.26.0)."""
    return packed == image or packed.startswith(f"{image}.")
