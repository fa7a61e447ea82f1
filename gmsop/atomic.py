"""Atomic writes for every file gmsop puts on disk: checkpoints, progress, metrics, bench
files, dataset caches, tables, figures and the scorecard. The one helper all of them use.

Why: a training job can be killed (``kill -9``, a wall-time limit, a node failure) at any
instant, and Snakemake or the aggregation step may read a file while it is being written. Every
file therefore goes to a hidden temporary file in the destination folder, is flushed and
fsync'ed, and is renamed over the target with ``os.replace`` (atomic on POSIX within one file
system); the folder is fsync'ed afterwards so the rename itself survives a crash. A reader sees
the old file or the new one, never half of either; a failed write removes its temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "append_json_line",
    "to_json",
    "remove_stale_temps",
]


def _default_mode() -> int:
    """0666 minus the umask: ``mkstemp`` would leave 0600, unreadable to the rest of a group."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - some file systems refuse to open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception the file
    is fsync'ed and moved over ``path`` (then the folder is fsync'ed), on any exception it is
    removed and ``path`` is left untouched. Parent folders are created. For writers that need a
    file name (a numpy memory map); :func:`atomic_write` covers the rest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write(
    path: str | os.PathLike, data: str | bytes | Callable[[IO[bytes]], Any], encoding: str = "utf-8"
) -> Path:
    """Write ``data`` (text, bytes, or a callable ``write(fh)`` on a binary file) to ``path``
    atomically (:func:`atomic_path`); returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        if isinstance(data, (str, bytes, bytearray)):
            fh.write(data.encode(encoding) if isinstance(data, str) else bytes(data))
        else:
            data(fh)
    return Path(path)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files of ``path`` left by a writer that was killed (``kill -9``).

    They are hidden and never read, but a crashed run should not leave half-written bytes
    behind; a rerun calls this before writing ``path`` again. Returns what it removed.
    """
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except FileNotFoundError:
                pass
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, data)


def to_json(obj: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON (``allow_nan=False``): a NaN in a result file is a bug, not a value."""
    return json.dumps(obj, indent=indent, allow_nan=False, sort_keys=sort_keys) + "\n"


def atomic_write_json(
    path: str | os.PathLike, obj: Any, indent: int | None = 2, sort_keys: bool = False
) -> Path:
    return atomic_write(path, to_json(obj, indent, sort_keys))


def append_json_line(path: str | os.PathLike, obj: Any) -> Path:
    """Append one JSON line to ``path`` by rewriting the whole file atomically.

    A progress file holds one line per epoch, so rewriting it costs nothing, and unlike a plain
    ``open(path, "a")`` a kill can never leave a torn last line for a reader to choke on.
    """
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    return atomic_write_bytes(path, old + to_json(obj, indent=None).encode("utf-8"))
