"""The one-time conversion cache: uint8 ``.npy`` memory maps written atomically.

Layout: ``{train,val}_images.npy`` uint8 (N, 3, H, W) (mapped copy-on-write), ``{train,val}_labels.npy``
int64 (N,) and ``meta.json``, written last with the fingerprint of the sources and options: a cache
counts only when it matches, so an interrupted conversion is redone. Caches live under
``cache_root()``, never in the data folder; generated data caches only under ``$GMSOP_CACHE_DIR``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmsop.atomic import atomic_path, atomic_write, atomic_write_json
from gmsop.data.base import Dataset, Split

#: bump when the layout of a cache changes, so old caches are rebuilt rather than misread
CACHE_FORMAT = 1
META_NAME = "meta.json"
#: environment variable naming the folder dataset caches go into (the workflow sets it)
CACHE_ENV = "GMSOP_CACHE_DIR"


def cache_root() -> Path:
    """``$GMSOP_CACHE_DIR``, else ``$XDG_CACHE_HOME/gmsop``, else ``~/.cache/gmsop``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return env_cache_root() or Path(xdg or Path.home() / ".cache").expanduser() / "gmsop"


def default_cache_dir(root: Path, key: str) -> Path:
    """``cache_root()/<data folder name>-<hash of its absolute path>/<key>``: one folder per data
    folder and dataset variant."""
    root = Path(root).expanduser().resolve()
    tag = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in root.name) or "root"
    return cache_root() / f"{name}-{tag}" / key


def prepare_cache_dir(cache_dir: Path) -> Path:
    """Create ``cache_dir`` or explain why it cannot be (read-only data folders are common)."""
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"cannot create the cache folder {cache_dir} ({exc.strerror}); pass cache_dir= a writable folder "
            f"or set {CACHE_ENV} (the workflow's config key cache_dir)"
        ) from None
    if not os.access(cache_dir, os.W_OK):
        raise ValueError(
            f"the cache folder {cache_dir} is not writable; "
            f"pass cache_dir= a writable folder or set {CACHE_ENV}"
        )
    return cache_dir


def dataset_cache_dir(root: Path, cache_dir: str | Path | None, key: str) -> Path:
    """``cache_dir`` when given, else ``default_cache_dir(root, key)``; created (``prepare_cache_dir``)."""
    return prepare_cache_dir(Path(cache_dir) if cache_dir else default_cache_dir(root, key))


def fingerprint(files: Iterable[Path | str], options: dict[str, Any], base: Path | None = None) -> str:
    """sha256 of (path relative to ``base``, size, mtime) of every source file plus the options:
    moving the data folder keeps the cache, touching a file invalidates it."""
    stats = [(Path(f), Path(f).stat()) for f in files]
    rows = [[str(p.relative_to(base) if base else p), st.st_size, st.st_mtime_ns] for p, st in stats]
    return identity_hash({"files": rows, "options": options})


@contextlib.contextmanager
def atomic_memmap(path: Path, shape: tuple[int, ...], dtype: Any = np.uint8) -> Iterator[np.memmap]:
    """Yield a writable ``.npy`` memmap at a temporary name (``arr.filename``), renamed to ``path``
    on success and removed on any exception."""
    with atomic_path(path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(int(s) for s in shape))
        try:
            yield arr
            arr.flush()
        finally:
            del arr


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through :func:`gmsop.atomic.atomic_write`."""
    atomic_write(path, lambda fh: np.save(fh, array))


def read_meta(cache_dir: Path, fingerprint_: str) -> dict[str, Any] | None:
    """The cache's metadata if it is complete and built from these sources/options, else None."""
    try:
        meta = json.loads((Path(cache_dir) / META_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None  # missing or unreadable metadata: no cache, it will be rebuilt
    return meta if meta.get("format") == CACHE_FORMAT and meta.get("fingerprint") == fingerprint_ else None


def write_meta(cache_dir: Path, fingerprint_: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``meta.json`` (the commit point of a conversion) and return what was written."""
    full = {"format": CACHE_FORMAT, "fingerprint": fingerprint_, **meta}
    atomic_write_json(Path(cache_dir) / META_NAME, full, sort_keys=True)
    return full


def invalidate(cache_dir: Path) -> None:
    """Remove ``meta.json`` so a partly replaced cache can never look valid."""
    (Path(cache_dir) / META_NAME).unlink(missing_ok=True)


def images_path(cache_dir: Path, split: str) -> Path:
    return Path(cache_dir) / f"{split}_images.npy"


def labels_path(cache_dir: Path, split: str) -> Path:
    return Path(cache_dir) / f"{split}_labels.npy"


def load_split(cache_dir: Path, split: str, meta: dict[str, Any]) -> Split:
    """Open one split of a committed cache as a memory-mapped ``Split``, checking it against meta."""
    shape = tuple(meta["splits"][split]["shape"])  # (N, 3, H, W)
    arrays = []
    for path, dtype, want, mmap in (
        (images_path(cache_dir, split), np.uint8, shape, "c"),
        (labels_path(cache_dir, split), np.int64, shape[:1], None),
    ):
        try:
            arr = np.load(path, mmap_mode=mmap)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(
                f"{path}: cannot read the cache ({exc}); delete {cache_dir} to rebuild it"
            ) from None
        if arr.dtype != dtype or arr.shape != want:
            raise ValueError(
                f"{path}: cached array is {arr.dtype} {arr.shape}, meta.json says {np.dtype(dtype)} {want}; "
                f"delete {cache_dir} to rebuild it"
            )
        arrays.append(torch.from_numpy(arr))
    return Split(*arrays, source=str(images_path(cache_dir, split)))


def load_dataset(cache_dir: Path, meta: dict[str, Any], **fields: Any) -> Dataset:
    """The ``Dataset`` of a committed cache: splits memory-mapped, mean and std from ``meta``."""
    splits = {s: load_split(cache_dir, s, meta) for s in ("train", "val")}
    return Dataset(**splits, mean=tuple(meta["mean"]), std=tuple(meta["std"]), **fields)


def env_cache_root() -> Path | None:
    """``$GMSOP_CACHE_DIR`` when set, else None (generated data caches only where asked to)."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else None


def identity_hash(identity: dict[str, Any]) -> str:
    """sha256 of a JSON-able description of what determines a cache's bytes (sorted keys)."""
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
