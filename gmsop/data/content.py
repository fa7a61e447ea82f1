"""A file-backed dataset's identity by content: one hash of the bytes of every file it reads.

Run ids hash it (``gmsop.experiments``) and a resumed checkpoint must match it
(``gmsop.engine.trainer``), so a replaced or edited file retrains exactly the runs that read it,
while moving the data folder or touching a file without changing its bytes changes nothing.
Generated datasets read no files (no ``register_source_files``): their identity stays their
options (``gmsop.data.registry.dataset_fingerprint``).

Cheap enough for every ``snakemake``: each file's sha256 is cached with its size and mtime in
``content.json`` beside the dataset's caches (``gmsop.data.cache.default_cache_dir``), and a
file is read again only when its size or mtime changed. Which files count is the dataset's
answer (``gmsop.data.registry.source_files``): ``npz`` its one or two .npz files, ``folder``
every image file, ``imagenet64`` the release files, ``places365`` its three list files (the
list files stand for the 1.8M images, as for its cache).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from gmsop.atomic import atomic_write_json
from gmsop.data.cache import default_cache_dir
from gmsop.data.registry import source_files

__all__ = ["content_fingerprint", "file_digests"]

_STORE = "content.json"
_BLOCK = 1 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if root.is_dir() else path.name


def file_digests(root: Path, files: list[Path]) -> dict[str, str]:
    """sha256 of each file, by path relative to ``root``; a cached digest is reused while the
    file's size and mtime are unchanged (the store is rewritten only when something changed, and
    skipped where the cache folder cannot be written)."""
    store = default_cache_dir(root, _STORE)
    try:
        cached = json.loads(store.read_text())
    except (OSError, ValueError):
        cached = {}
    fresh: dict[str, list[Any]] = {}
    for path in files:
        st = path.stat()
        name = _relative(path, root)
        old = cached.get(name)
        if isinstance(old, list) and len(old) == 3 and old[:2] == [st.st_size, st.st_mtime_ns]:
            fresh[name] = old
        else:
            fresh[name] = [st.st_size, st.st_mtime_ns, _sha256(path)]
    if fresh != cached:
        try:
            atomic_write_json(store, fresh, indent=None, sort_keys=True)
        except OSError:
            pass  # a read-only cache folder: hash again next time
    return {name: entry[2] for name, entry in fresh.items()}


def content_fingerprint(
    name: str, root: str | Path | None, options: dict[str, Any] | None = None
) -> str | None:
    """``sha256:<hex>`` over the relative path and bytes of every file dataset ``name`` reads
    from ``root``; None for a dataset that reads no files. ValueError (from the dataset) when
    the root or a file it needs is missing."""
    files = source_files(name, root, options)
    if files is None:
        return None
    base = Path(root).expanduser().absolute()
    digests = file_digests(base, [Path(f).absolute() for f in files])
    blob = json.dumps(sorted(digests.items())).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]
