"""The resume checkpoint: one ``last.pt`` per run, replaced atomically after every epoch.

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

from pathlib import Path
from typing import Any

import torch

from gmsop.atomic import atomic_write
from gmsop.formats import CHECKPOINT_FORMAT, CHECKPOINT_KEYS, CHECKPOINT_NAME, CONFIG_NAME, PROGRESS_NAME

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "PROGRESS_NAME", "CONFIG_NAME", "CheckpointMismatchError",
    "save_checkpoint", "load_checkpoint", "check_fingerprint",
]


class CheckpointMismatchError(ValueError):
    """The checkpoint in a run's folder was written by a different configuration."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (see the module docstring) atomically to ``path``."""
    payload = {"format": CHECKPOINT_FORMAT, **state}
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` onto the CPU; ValueError if it is unusable."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, do not guess
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"checkpoint {path} has format {found!r}, this gmsop writes format {CHECKPOINT_FORMAT}")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}")
    return ckpt


def check_fingerprint(ckpt: dict[str, Any], fingerprint: dict[str, Any], path: str | Path) -> None:
    """Refuse to resume from a checkpoint of another configuration, naming every difference."""
    saved = ckpt["fingerprint"]
    keys = sorted(set(saved) | set(fingerprint))
    diffs = [f"{k}: checkpoint {saved.get(k, '<absent>')!r} vs now {fingerprint.get(k, '<absent>')!r}"
             for k in keys if saved.get(k) != fingerprint.get(k)]
    if diffs:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written by a different configuration ({'; '.join(diffs)}); "
            f"resume with the same settings, or use another --ckpt-dir (or delete {path}) to start afresh"
        )
