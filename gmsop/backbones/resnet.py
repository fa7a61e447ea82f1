"""The modified ResNets of Table 1 (and WRN-36-2 of Table 3) for 64x64 / 96x96 inputs.

3x3 stem (stride 1, BN, ReLU, no max-pool), then stages of post-activation basic blocks with
strides 1, 2, 2 and ``last_stride`` (2 for first-order heads; 1 for second-order heads in the
released code: a 16x16 map at 64x64). A 1x1 conv + BN shortcut where width or stride changes.
Blocks match torchvision's ``BasicBlock`` (same submodule names), defined here because importing
``torchvision.models`` costs seconds per job. Init: He-normal (fan_in) convs, BN 1 / 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), two 3x3 convs (He et al. 2016)."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer=nn.BatchNorm2d,
    ):
        super().__init__()
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width)
        self.bn2 = norm_layer(width)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A basic-block ResNet trunk: (B, 3, H, W) -> (B, widths[-1], H/s, W/s); ``blocks`` per stage."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        stem_width: int,
        last_stride: int = 2,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(
                f"blocks {list(blocks)} and widths {list(widths)} must be non-empty and of equal length"
            )
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
        norm = partial(nn.BatchNorm2d, momentum=bn_momentum)
        self.stem = nn.Sequential(conv3x3(3, stem_width), norm(stem_width), nn.ReLU(inplace=True))
        # stride 1 in the first stage, 2 in the middle ones; the last depends on the head
        strides = [1] + [2] * (len(widths) - 2) + [last_stride] if len(widths) > 1 else [last_stride]
        stages, c = [], stem_width
        for n, width, stride in zip(blocks, widths, strides):
            shortcut = None
            if stride != 1 or c != width:  # projection only where the shape changes
                shortcut = nn.Sequential(conv1x1(c, width, stride), norm(width))
            layers = [BasicBlock(c, width, stride, shortcut, norm_layer=norm)]
            layers += [BasicBlock(width, width, norm_layer=norm) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c = width
        self.stages = nn.Sequential(*stages)
        self.num_features = c
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 3, H, W) -> (B, stem, H, W)
        return self.stages(x)  # -> (B, widths[-1], H/s, W/s)
