"""The One-layer SG-MoE expert (Shazeer et al., ICLR 2017) used as a Table-3 counterpart.

Each expert is a fully-connected layer on the GAP feature: (B, C, H, W) -> GAP -> (B, C) ->
Linear(C, width) -> (B, width); 128 x 512 on ResNet-18. Sixteen of them behind the same gate as
GM-GAP make "ResNet-18 + One-layer-SG-MoE". As a ``GroupedPlan`` it is GAP (kept as a column)
then one matmul + bias, so a gated mixture batches its experts like the other built-in CMs.
"""

from __future__ import annotations

from torch import Tensor, nn

from gmsop.layers.gap import global_avg_pool
from gmsop.layers.grouped import GroupedPlan

__all__ = ["LinearExpert"]


def _gap_column(x: Tensor) -> Tensor:
    return global_avg_pool(x)[:, :, None]  # (B, C, H, W) -> (B, C, 1)


class LinearExpert(nn.Module):
    second_order = False

    def __init__(self, in_channels: int, width: int = 512):
        super().__init__()
        self.in_channels = in_channels
        self.fc = nn.Linear(in_channels, int(width))
        self.out_features = int(width)

    def grouped_plan(self) -> GroupedPlan:
        """GAP as a (B, C, 1) column, then the linear layer as an (out, in) matrix + bias."""
        return GroupedPlan((self.fc.weight,), (self.fc.bias,), False, _gap_column, None, ("linear_expert",))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(global_avg_pool(x))  # (B, C, H, W) -> (B, C) -> (B, width)
