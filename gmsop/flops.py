"""Parameter and FLOP counts of a model, as printed by ``gmsop models`` and stored with runs.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, 2 per
multiply-add) on a forward pass in eval mode, divided by the batch size. A gated mixture is
counted as it executes: K of the N components per image, plus the gate.

``count_flops_cached`` remembers a count under ``$GMSOP_CACHE_DIR/flops/`` (the workflow sets
that folder): counting runs under a torch dispatch mode, whose first use imports the compiler
(``torch._dynamo``, about 1.3 s of a job's start-up on the CPU, issue 17), and the workflow's
jobs count the same few networks again and again (every seed, every benchmark). A count is keyed
by everything that decides it: the module tree as printed (layers and shapes), the protocol's
switches (less the loss-only ones, ``gmsop.protocol.SPEED_NEUTRAL``), the input size, the torch
version, and the source of the gmsop package and of every module class in the model (a user's
head included), so changed code is counted afresh.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

__all__ = ["count_params", "count_flops", "count_flops_cached"]

_PACKAGE = Path(__file__).resolve().parent


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_size=(3, 64, 64), batch_size: int = 2, device: str | torch.device = "cpu") -> float:
    """Forward FLOPs per image at ``input_size`` (C, H, W); the model's mode is restored."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        # a generator of its own: counting leaves the global random stream untouched
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(batch_size, *input_size, generator=gen).to(device)
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() / batch_size
    finally:
        model.train(was_training)


@lru_cache(maxsize=None)
def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _code_files(model: nn.Module) -> list[str]:
    """The gmsop package's sources plus the file of every module class in ``model``."""
    files = {str(p) for p in _PACKAGE.rglob("*.py")}
    for module in model.modules():
        try:
            source = inspect.getsourcefile(type(module))
        except TypeError:  # a class defined in C or interactively: its printout must do
            continue
        if source:
            files.add(str(Path(source).resolve()))
    return sorted(files)


def flops_key(model: nn.Module, input_size, batch_size: int = 2) -> str:
    """sha256 of what decides ``count_flops(model, input_size, batch_size)`` (module docstring)."""
    from dataclasses import asdict, is_dataclass

    from gmsop.protocol import SPEED_NEUTRAL

    protocol = getattr(model, "protocol", None)
    if is_dataclass(protocol):  # the switches that change what a forward pass computes
        switches = {k: v for k, v in asdict(protocol).items() if k not in SPEED_NEUTRAL and k != "name"}
    else:
        switches = repr(protocol) if protocol is not None else None
    # a module may print a loss-only switch (GatedMixture prints alpha): not part of the key
    printed = re.sub(r"\b(%s)=[^,)\n]*(, )?" % "|".join(map(re.escape, SPEED_NEUTRAL)), "", str(model))
    identity = {
        "model": printed,
        "protocol": switches,
        "input_size": [int(v) for v in input_size],
        "batch_size": int(batch_size),
        "torch": torch.__version__,
        "code": {f: _file_digest(f) for f in _code_files(model)},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def count_flops_cached(model: nn.Module, input_size=(3, 64, 64), batch_size: int = 2) -> float:
    """``count_flops`` on the CPU, read from or written to ``$GMSOP_CACHE_DIR/flops/`` when that
    variable is set (otherwise simply counted). A cache file that cannot be read is counted anew."""
    from gmsop.atomic import atomic_write_json
    from gmsop.data.cache import env_cache_root

    root = env_cache_root()
    if root is None:
        return count_flops(model, input_size=input_size, batch_size=batch_size)
    path = root / "flops" / f"{flops_key(model, input_size, batch_size)}.json"
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["flops_per_image"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    flops = count_flops(model, input_size=input_size, batch_size=batch_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"flops_per_image": flops, "model": type(model).__name__,
                                 "input_size": [int(v) for v in input_size]})
    except OSError:
        pass  # a read-only cache folder costs a recount next time, nothing else
    return flops
