"""The bundle file: a tar.gz whose first member is the manifest, then `parts/<part>/<path>`.

Restoring is all or nothing: every part is extracted into a staging directory inside its own root
(same filesystem, so the final move is a rename), every file is checked against the manifest's
size and SHA-256, and only then are the entries moved in. A truncated download, a flipped byte or a
crafted member fails before a cache is touched, and the staging directories are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import RefusedError
from . import manifest as mf
from .locations import PARTS
from .select import entry_files

PREFIX = "parts"
CHUNK = 1 << 20


def is_url(source: str) -> bool:
    """A bundle named by an http(s) URL (downloaded first), not a file."""
    return source.startswith(("http://", "https://"))


class BundleRefused(RefusedError):
    """A bundle that is corrupt, truncated, crafted, or made for another host."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files_of(roots: dict[str, Path], entries: dict[str, list[str]]) -> list[mf.File]:
    """The manifest's file list for the chosen entries, with sizes and checksums."""
    out = []
    for part, names in entries.items():
        for entry in names:
            for path in entry_files(roots[part], entry):
                relative = path.relative_to(roots[part]).as_posix()
                out.append(mf.File(part, relative, path.stat().st_size, sha256_of(path)))
    return out


def write(target: Path, manifest: mf.Manifest, roots: dict[str, Path]) -> None:
    """Write the bundle to `target` through a temporary file beside it (never half a bundle)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            data = manifest.to_json().encode()
            info = tarfile.TarInfo(mf.NAME)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            for f in manifest.files:
                tar.add(roots[f.part] / f.path, arcname=f"{PREFIX}/{f.part}/{f.path}",
                        recursive=False)  # fmt: skip
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except FileNotFoundError:
        raise BundleRefused(f"cache unpack: no such file: {path}") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        # tarfile's "r:*" lists every method it tried, one per line: the last says enough
        why = str(e).strip().splitlines()[-1].lstrip("- ") if str(e).strip() else type(e).__name__
        raise BundleRefused(f"cache unpack: {path} is not a bundle ({why})") from None


def read_manifest(path: Path) -> mf.Manifest:
    with _open(path) as tar:
        try:
            member = tar.next()
            if member is None or member.name != mf.NAME or not member.isfile():
                raise BundleRefused(f"cache unpack: {path} has no {mf.NAME} first")
            f = tar.extractfile(member)
            text = f.read().decode() if f else ""
        except (tarfile.TarError, OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
            raise BundleRefused(f"cache unpack: {path} is corrupt or truncated ({e})") from None
    try:
        return mf.parse(text)
    except mf.ManifestError as e:
        raise BundleRefused(f"cache unpack: {path}: {e}") from None


@contextmanager
def staging(roots: dict[str, Path], parts: list[str]) -> Iterator[dict[str, Path]]:
    """A fresh directory inside each part's root; removed on the way out, whatever happened. A
    restore that fails also takes away the folders it made to hold them (a fresh host's
    ~/.cache/vllm ...): it leaves the caches as it found them."""
    made: dict[str, Path] = {}
    created: list[Path] = []  # folders that did not exist, outermost first
    try:
        for part in parts:
            missing = [d for d in (roots[part], *roots[part].parents) if not d.exists()]
            created.extend(reversed(missing))
            roots[part].mkdir(parents=True, exist_ok=True)
            made[part] = Path(tempfile.mkdtemp(prefix=".serve-unpack-", dir=roots[part]))
        yield made
    except BaseException:
        _remove_stage(made)
        for folder in reversed(created):  # innermost first; one something else wrote to stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    _remove_stage(made)


def _remove_stage(made: dict[str, Path]) -> None:
    for path in made.values():
        shutil.rmtree(path, ignore_errors=True)


def _extract(path: Path, stage: dict[str, Path]) -> None:
    """Every member under parts/<part>/ into its staging directory, through tarfile's "data"
    filter (no absolute paths, no `..`, no links out, no devices: PEP 706)."""
    with _open(path) as tar:
        try:
            for member in tar:
                if member.name == mf.NAME:
                    continue
                bits = member.name.split("/", 2)
                if len(bits) != 3 or bits[0] != PREFIX or bits[1] not in stage:
                    raise BundleRefused(f"cache unpack: unexpected member {member.name!r}")
                renamed = member.replace(name=bits[2], deep=False)
                tar.extract(renamed, stage[bits[1]], filter="data")
        except tarfile.FilterError as e:
            raise BundleRefused(f"cache unpack: unsafe member refused ({e})") from None
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise BundleRefused(f"cache unpack: {path} is corrupt or truncated ({e})") from None


def _verify(manifest: mf.Manifest, stage: dict[str, Path]) -> None:
    expected = {(f.part, f.path): f for f in manifest.files}
    for part, directory in stage.items():
        for base, _dirs, names in os.walk(directory):
            for name in names:
                relative = (Path(base) / name).relative_to(directory).as_posix()
                if (part, relative) not in expected:
                    raise BundleRefused(f"cache unpack: {part}/{relative} is not in the manifest")
    for f in manifest.files:
        path = stage[f.part] / f.path
        if not path.is_file():
            raise BundleRefused(f"cache unpack: {f.part}/{f.path} is missing (truncated bundle)")
        if path.stat().st_size != f.size or sha256_of(path) != f.sha256:
            raise BundleRefused(f"cache unpack: {f.part}/{f.path} does not match its checksum")


def _move_in(root: Path, entry: str, staged: Path, trash: Path) -> None:
    """Put one verified entry in place; an older copy of it is moved aside, not merged with."""
    target = root / entry
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        os.replace(target, trash / hashlib.sha256(entry.encode()).hexdigest()[:16])
    os.replace(staged, target)


def restore(path: Path, manifest: mf.Manifest, roots: dict[str, Path]) -> dict[str, int]:
    """Extract, verify, then move in; part -> bytes restored. Nothing is moved unless all of the
    bundle checked out."""
    if reason := mf.check_paths(manifest, PARTS):
        raise BundleRefused(f"cache unpack: {path}: {reason}")
    parts = sorted({f.part for f in manifest.files})
    with staging(roots, parts) as stage:
        _extract(path, stage)
        _verify(manifest, stage)
        for part in parts:
            trash = stage[part] / ".replaced"
            trash.mkdir()
            for entry in manifest.entries.get(part, []):
                if (stage[part] / entry).exists():
                    _move_in(roots[part], entry, stage[part] / entry, trash)
    return {part: manifest.sizes.get(part, 0) for part in parts}
