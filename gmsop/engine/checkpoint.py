"""The resume checkpoint ``last.pt``, replaced atomically after every epoch (the one replaced is kept
as ``previous.pt``, the fallback when ``last.pt`` is unreadable). Contents: ``CHECKPOINT_KEYS``, all
tensors or plain containers for ``weights_only=True``; data order is a function of (seed, epoch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gmsop.atomic import atomic_path
from gmsop.formats import CHECKPOINT_FORMAT, CHECKPOINT_KEYS, CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME


class CheckpointMismatchError(ValueError):
    """The checkpoint in a run's folder was written by a different configuration."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``path``; once the new bytes read back as a checkpoint, the
    file it replaces becomes ``previous.pt`` (a failed write leaves both files as they were)."""
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, **state}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
        load_checkpoint(tmp)  # verified before anything is replaced
        if path.exists():
            os.replace(path, path.with_name(PREVIOUS_CHECKPOINT_NAME))
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` onto the CPU; ValueError if it is unusable."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, do not guess
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"checkpoint {path} has format {found!r}, this gmsop writes format {CHECKPOINT_FORMAT}"
        )
    if missing := [k for k in CHECKPOINT_KEYS if k not in ckpt]:
        raise ValueError(f"checkpoint {path} lacks {missing}")
    return ckpt


def resume_checkpoint(ckpt_dir: str | Path) -> tuple[dict[str, Any] | None, Path | None, str | None]:
    """``(checkpoint, its path, a note)`` to resume from (Nones when none): ``last.pt``, else
    ``previous.pt`` with a note (an unreadable ``last.pt`` becomes ``last.pt.unreadable``)."""
    last, prev = Path(ckpt_dir) / CHECKPOINT_NAME, Path(ckpt_dir) / PREVIOUS_CHECKPOINT_NAME
    if not last.exists() and not prev.exists():
        return None, None, None
    problem = f"{last} is missing"
    if last.exists():
        try:
            return load_checkpoint(last), last, None
        except ValueError as err:
            problem = str(err)
    if prev.exists():
        try:
            ckpt = load_checkpoint(prev)
        except ValueError as err:
            problem += f"; the previous checkpoint cannot be used either ({err})"
        else:
            if last.exists():  # set aside, so the next save does not make it the previous checkpoint
                os.replace(last, last.with_name(last.name + ".unreadable"))
                problem += f" (moved to {last.name}.unreadable)"
            return ckpt, prev, f"{problem}; resuming from the previous checkpoint {prev} instead"
    else:
        problem += f"; there is no previous checkpoint ({prev})"
    raise ValueError(
        f"{problem}. The run cannot resume: delete {last} (and {prev}) to train this run again from "
        f"its first epoch, or put back a good copy of {last}"
    )


def check_fingerprint(ckpt: dict[str, Any], fingerprint: dict[str, Any], path: str | Path) -> None:
    """Refuse to resume from a checkpoint of another configuration, naming every difference."""
    saved = ckpt["fingerprint"]
    diffs = [
        f"{k}: checkpoint {saved.get(k, '<absent>')!r} vs now {fingerprint.get(k, '<absent>')!r}"
        for k in sorted(set(saved) | set(fingerprint))
        if saved.get(k) != fingerprint.get(k)
    ]
    if diffs:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written by a different configuration ({'; '.join(diffs)}); "
            f"resume with the same settings, or use another --ckpt-dir (or delete {path}) to start afresh"
        )
