"""Parameter and forward-FLOP counts (``FlopCounterMode``: matmuls and convolutions, 2 per
multiply-add, eval mode, per image). A gated mixture counts as it executes: K of N components
plus the gate. Counted where shown (benchmarks, ``gmsop models``, ``gmsop plan``), not in training.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_size=(3, 64, 64)) -> float:
    """Forward FLOPs per image at ``input_size`` (C, H, W) (a batch of 2); the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        # a generator of its own: counting leaves the global random stream untouched
        x = torch.randn(2, *input_size, generator=torch.Generator(device="cpu").manual_seed(0))
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() / 2
    finally:
        model.train(was_training)
