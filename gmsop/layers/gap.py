"""First-order heads: GAP, the parametric GAP ("ResNet-18-Xd") and the One-layer SG-MoE expert.

GAP: (B, C, H, W) -> (B, C). Parametric GAP: 1x1 conv C -> X (no bias) [-> BN] -> ReLU -> GAP, the
CM of GM-GAP (512-d); ``XdHead`` is the same as a network's head (a single-CM GM-GAP, followed by
the mixture's classifier). ``LinearExpert`` (Shazeer et al., ICLR 2017): GAP -> Linear(C, width).
"""

from __future__ import annotations

from torch import Tensor, nn

from gmsop.layers.grouped import GroupedPlan, TransformPool


def global_avg_pool(x: Tensor) -> Tensor:
    return x.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)


def _mean_positions(x: Tensor) -> Tensor:
    return x.sum(dim=-1) / x.shape[-1]  # (B, C, M) -> (B, C); sum: its backward is a lazy expand


def _gap_column(x: Tensor) -> Tensor:
    return global_avg_pool(x)[:, :, None]  # (B, C, H, W) -> (B, C, 1)


class GAP(TransformPool):
    pool_key = ("gap",)

    def __init__(self, in_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_features = in_channels

    def pool(self, x: Tensor) -> Tensor:
        return global_avg_pool(x)


class ParametricGAP(GAP):
    def __init__(self, in_channels: int, width: int = 512, conv_bn: bool = False, bn_momentum: float = 0.1):
        super().__init__(in_channels)
        if int(width) < 1:
            raise ValueError(f"width must be >= 1, got {width!r}")
        self.conv = nn.Conv2d(in_channels, int(width), kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(int(width), momentum=bn_momentum) if conv_bn else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.out_features = int(width)

    def grouped_plan(self) -> GroupedPlan | None:
        """The conv as an (out, in) matrix + ReLU, then GAP; None with BatchNorm."""
        if not isinstance(self.bn, nn.Identity):
            return None
        weight = self.conv.weight.view(self.conv.out_channels, self.conv.in_channels)
        return GroupedPlan((weight,), (None,), True, None, _mean_positions, self.pool_key)

    def transform(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))  # (B, C, H, W) -> (B, X, H, W)


class XdHead(ParametricGAP):
    """ "ResNet-X-Xd" (Sec. 3.1, note 2): a parametric GAP read as a gated mixture with a single CM,
    so the mixture's classifier (BN1d + dropout) follows it. ``conv_bn``: the released baseline's
    1x1 conv -> BN -> ReLU -> GAP; off by default (the CM of GM-GAP has no BN)."""

    mixture = True


class LinearExpert(nn.Module):
    """One-layer SG-MoE expert: GAP -> Linear(C, width) (128 x 512 on ResNet-18)."""

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
