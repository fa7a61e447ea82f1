"""Atomic writes for every file gmsop puts on disk: each goes to a hidden temporary file beside
the target, is fsync'ed and renamed over it (``os.replace``), then the folder is fsync'ed, so a
killed job or a concurrent reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def _fsync(path: str | os.PathLike, folder: bool = False) -> None:
    """fsync a file; for a folder, an error is ignored (some file systems refuse to open one)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if not folder:
            raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (parent folders created), moved over ``path`` when the
    block ends without an exception, else removed; for writers that need a file name (a memory map)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp leaves 0600, unreadable to the rest of a group
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync(path.parent, folder=True)


def atomic_write(
    path: str | os.PathLike, data: str | bytes | Callable[[IO[bytes]], Any], encoding: str = "utf-8"
) -> Path:
    """Write ``data`` (text, bytes, or a callable ``write(fh)`` on a binary file) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        if isinstance(data, (str, bytes, bytearray)):
            fh.write(data.encode(encoding) if isinstance(data, str) else bytes(data))
        else:
            data(fh)
    return Path(path)


atomic_write_bytes = atomic_write


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of ``path`` a killed writer left behind; returns them."""
    path, removed = Path(path), []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp") if path.parent.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def to_json(obj: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON (``allow_nan=False``): a NaN in a result file is a bug, not a value."""
    return json.dumps(obj, indent=indent, allow_nan=False, sort_keys=sort_keys) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any, **options) -> Path:
    return atomic_write(path, to_json(obj, **options))  # options: to_json's indent, sort_keys


def append_json_line(path: str | os.PathLike, obj: Any) -> Path:
    """Append one JSON line to ``path`` by rewriting the (small) file atomically: no torn last line."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    return atomic_write(path, old + to_json(obj, indent=None).encode("utf-8"))
