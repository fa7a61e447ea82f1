"""The One-layer SG-MoE expert (Shazeer et al., ICLR 2017) used as a Table-3 counterpart.

Each expert is a fully-connected layer on the GAP feature: (B, C, H, W) -> GAP -> (B, C) ->
Linear(C, width) -> (B, width); 128 x 512 on ResNet-18. Sixteen of them behind the same gate as
GM-GAP make "ResNet-18 + One-layer-SG-MoE".
"""
from __future__ import annotations

from torch import Tensor, nn

from gmsop.layers.gap import global_avg_pool

__all__ = ["LinearExpert"]


class LinearExpert(nn.Module):
    second_order = False

    def __init__(self, in_channels: int, width: int = 512):
        super().__init__()
        self.in_channels = in_channels
        self.fc = nn.Linear(in_channels, int(width))
        self.out_features = int(width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(global_avg_pool(x))  # (B, C, H, W) -> (B, C) -> (B, width)
