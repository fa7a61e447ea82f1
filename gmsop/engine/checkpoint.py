"""The resume checkpoint: one ``last.pt`` per run, replaced atomically after every epoch.

A checkpoint survives a cut (a full disk, a copy cut short, a kill during the write): the new
one is written under a temporary name and read back before it replaces ``last.pt``, and the one
it replaces is kept as ``previous.pt``. ``resume_checkpoint`` reads ``last.pt`` and falls back
to ``previous.pt`` when ``last.pt`` is unreadable (or missing after a cut between the renames);
when neither can be read it stops naming both files and what to do.

Contents (all tensors or plain containers, so ``torch.load(..., weights_only=True)`` reads it
and loading a checkpoint can never execute code):

    format        CHECKPOINT_FORMAT; a different value is refused
    fingerprint   TrainConfig.fingerprint(): the config fields that determine the numbers
    epoch         epochs completed (the step schedule is a pure function of it)
    model         model.state_dict() (uncompiled module: no ``_orig_mod.`` prefixes)
    optimizer     optimizer.state_dict() (momentum buffers, lr)
    rng           env.capture_rng_state(): torch CPU/CUDA, numpy, python (+ named generators)
    records       the per-epoch records so far (what metrics.json["epochs"] will hold)
    totals        training samples and seconds so far, summed over all sessions (for img/s)

Why only at epoch ends: the data order and the augmentation are functions of (seed, epoch) and
the saved generator states, so restarting the interrupted epoch from its beginning with the
state saved after the previous one replays it exactly; mid-epoch checkpoints would add state
(loader position) for no gain in correctness.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gmsop.atomic import atomic_path
from gmsop.formats import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_KEYS,
    CHECKPOINT_NAME,
    CONFIG_NAME,
    PREVIOUS_CHECKPOINT_NAME,
    PROGRESS_NAME,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "PREVIOUS_CHECKPOINT_NAME",
    "PROGRESS_NAME",
    "CONFIG_NAME",
    "CheckpointMismatchError",
    "save_checkpoint",
    "load_checkpoint",
    "resume_checkpoint",
    "check_fingerprint",
]


class CheckpointMismatchError(ValueError):
    """The checkpoint in a run's folder was written by a different configuration."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (see the module docstring) atomically to ``path``; the file it replaces
    becomes ``previous.pt`` beside it, only after the new bytes were read back as a checkpoint
    (a write that fails or reads back wrong leaves both files as they were)."""
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
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}")
    return ckpt


def resume_checkpoint(ckpt_dir: str | Path) -> tuple[dict[str, Any] | None, Path | None, str | None]:
    """The checkpoint to resume a run from: ``(checkpoint, its path, a note)``, or Nones when the
    folder holds none. ``last.pt`` first; when it is unreadable (or missing while
    ``previous.pt`` exists: a cut between the two renames of ``save_checkpoint``) the previous
    epoch's ``previous.pt``, with a note saying so (an unreadable ``last.pt`` is renamed
    ``last.pt.unreadable``, never read again). ValueError naming both files and what to do when a
    checkpoint exists but none can be read."""
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
    keys = sorted(set(saved) | set(fingerprint))
    diffs = [
        f"{k}: checkpoint {saved.get(k, '<absent>')!r} vs now {fingerprint.get(k, '<absent>')!r}"
        for k in keys
        if saved.get(k) != fingerprint.get(k)
    ]
    if diffs:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written by a different configuration ({'; '.join(diffs)}); "
            f"resume with the same settings, or use another --ckpt-dir (or delete {path}) to start afresh"
        )
