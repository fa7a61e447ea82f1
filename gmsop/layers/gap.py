"""First-order heads: global average pooling (GAP) and the parametric GAP ("ResNet-18-Xd").

GAP: (B, C, H, W) -> (B, C). Parametric GAP: 1x1 conv C -> X (no bias) -> ReLU -> GAP, a
first-order component model (512-d in GM-GAP); ``XdHead`` is the same as a network's head
("ResNet-18-8256d": the single-CM GM-GAP, followed by the mixture's classifier). Like the
second-order heads they split into ``transform`` and a parameter-free ``pool``; the parametric
GAP also describes itself as a ``GroupedPlan`` (matmul + ReLU, then GAP) for batched mixtures.
"""

from __future__ import annotations

from torch import Tensor, nn

from gmsop.layers.grouped import GroupedPlan

__all__ = ["GAP", "ParametricGAP", "XdHead", "global_avg_pool"]


def global_avg_pool(x: Tensor) -> Tensor:
    return x.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)


def _mean_positions(x: Tensor) -> Tensor:
    return x.sum(dim=-1) / x.shape[-1]  # (B, C, M) -> (B, C); sum: its backward is a lazy expand


class GAP(nn.Module):
    second_order = False
    batchable_pool = True  # pool() is parameter-free and shared by every instance
    pool_key = ("gap",)

    def __init__(self, in_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_features = in_channels

    def transform(self, x: Tensor) -> Tensor:
        return x

    def pool(self, x: Tensor) -> Tensor:
        return global_avg_pool(x)

    def forward(self, x: Tensor) -> Tensor:
        return global_avg_pool(x)


class ParametricGAP(nn.Module):
    second_order = False
    batchable_pool = True  # pool() is parameter-free and shared by every instance

    def __init__(self, in_channels: int, width: int = 512):
        super().__init__()
        if int(width) < 1:
            raise ValueError(f"width must be >= 1, got {width!r}")
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, int(width), kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.out_features = int(width)

    pool_key = ("gap",)

    def grouped_plan(self) -> GroupedPlan:
        """The conv as an (out, in) matrix + ReLU, then GAP."""
        weight = self.conv.weight.view(self.conv.out_channels, self.conv.in_channels)
        return GroupedPlan((weight,), (None,), True, None, _mean_positions, self.pool_key)

    def transform(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x))  # (B, C, H, W) -> (B, X, H, W)

    def pool(self, x: Tensor) -> Tensor:
        return global_avg_pool(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.transform(x))


class XdHead(nn.Module):
    """ "ResNet-X-Xd" as the paper defines it (Sec. 3.1, note 2): a parametric GAP read as a gated
    mixture of first-order GAP with a single CM, so the mixture's classifier (BN1d + dropout)
    follows it (``mixture = True``; the model builds that classifier).

    ``conv_bn`` adds BatchNorm after the 1x1 conv (1x1 conv -> BN -> ReLU -> GAP), the conv
    helper of the released baseline code; off by default (the CM of GM-GAP has no BN).
    """

    second_order = False
    mixture = True

    def __init__(self, in_channels: int, width: int = 512, conv_bn: bool = False, bn_momentum: float = 0.1):
        super().__init__()
        if int(width) < 1:
            raise ValueError(f"width must be >= 1, got {width!r}")
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, int(width), kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(int(width), momentum=bn_momentum) if conv_bn else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.out_features = int(width)

    def forward(self, x: Tensor) -> Tensor:
        return global_avg_pool(self.relu(self.bn(self.conv(x))))  # (B, C, H, W) -> (B, X)
