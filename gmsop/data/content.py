"""A file-backed dataset's identity by content: one hash of the bytes of every file it reads.

Run ids hash it, so an edited file retrains the runs that read it while moving or touching the data
changes nothing. Which files count is the dataset's ``source_files``; each file's sha256 is kept with
its size and mtime in ``content.json`` beside the dataset's caches, recomputed only when those change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from gmsop.atomic import atomic_write_json
from gmsop.data.cache import default_cache_dir
from gmsop.data.registry import source_files


def file_digests(root: Path, files: list[Path]) -> dict[str, str]:
    """sha256 of each file, by path relative to ``root``; a stored digest is reused while the
    file's size and mtime are unchanged."""
    store = default_cache_dir(root, "content.json")
    try:
        cached = json.loads(store.read_text())
    except (OSError, ValueError):
        cached = {}
    fresh: dict[str, list[Any]] = {}
    for path in files:
        st = path.stat()
        name = str(path.relative_to(root)) if root.is_dir() else path.name
        old = cached.get(name)
        if isinstance(old, list) and len(old) == 3 and old[:2] == [st.st_size, st.st_mtime_ns]:
            fresh[name] = old
        else:
            with open(path, "rb") as fh:
                fresh[name] = [st.st_size, st.st_mtime_ns, hashlib.file_digest(fh, "sha256").hexdigest()]
    if fresh != cached:
        try:
            atomic_write_json(store, fresh, indent=None, sort_keys=True)
        except OSError:
            pass  # a read-only cache folder: hash again next time
    return {name: entry[2] for name, entry in fresh.items()}


def content_fingerprint(
    name: str, root: str | Path | None, options: dict[str, Any] | None = None
) -> str | None:
    """``sha256:<hex>`` over the relative path and bytes of every file dataset ``name`` reads from
    ``root``; None for a dataset that reads no files."""
    files = source_files(name, root, options)
    if files is None:
        return None
    base = Path(root).expanduser().absolute()
    digests = file_digests(base, [Path(f).absolute() for f in files])
    blob = json.dumps(sorted(digests.items())).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]
