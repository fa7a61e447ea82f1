"""Parameter and FLOP counts of a model, as printed by ``gmsop models`` and stored with benchmarks.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, 2 per
multiply-add) on a forward pass in eval mode, divided by the batch size. A gated mixture is
counted as it executes: K of the N components per image, plus the gate. Counted only where a
count is shown (benchmark jobs, ``gmsop models``, ``gmsop plan``), not in training jobs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(
    model: nn.Module, input_size=(3, 64, 64), batch_size: int = 2, device: str | torch.device = "cpu"
) -> float:
    """Forward FLOPs per image at ``input_size`` (C, H, W); the model's mode is restored."""
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
