"""Atomic file writes: a reader (Snakemake, a browser, a second job) never sees half a file.

Everything in ``gmsop.aggregate`` that writes goes through :func:`atomic_write`: the bytes go to a
hidden temporary file in the destination folder, are flushed and fsync'ed, and the temporary file
is then renamed over the target with ``os.replace`` (atomic on POSIX within one file system). If
anything fails the temporary file is removed and the old target, if any, is left untouched.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _default_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give (0666 minus the umask).

    ``mkstemp`` creates 0600 files; without this a report written atomically would be unreadable
    by anyone but its owner, unlike one written the ordinary way.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; create parent folders. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
