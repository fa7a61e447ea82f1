"""Second-order pooling heads: SR-SOP (iSQRT-COV) and the paper's parametric SR-SOP (Eq. 6).

SR-SOP: (B, d, H, W) -> (B, d(d+1)/2), parameter-free; 8256-d for d = 128.
Parametric SR-SOP: J sequential 1x1 convolutions P_j (each = one step of the iterative
generalised-Gaussian covariance estimate, Eq. 6-8), each followed by ReLU, then SR-SOP.
Default J = 2 with widths 2*in -> 128 (128->256->128 on ResNet-18, 256->512->128 on WRN-36-2).
Protocol switches: ``ns_iterations`` (3 code / 5 paper) and ``cm_batchnorm`` (BN after each
conv: none in the released code).

Both expose ``transform`` (the parametric part, per component) and ``pool`` (the
parameter-free part), so a mixture can run every component's transform on its own samples and
then pool all routed samples in ONE batched Newton-Schulz call. Without BatchNorm a parametric
SR-SOP also describes itself as a ``GroupedPlan`` (matmul + ReLU per conv, then SR-SOP), which
lets a mixture run all its components as batched matmuls on stacked weights.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from gmsop.functional import isqrt_cov, triu_dim
from gmsop.layers.grouped import GroupedPlan

__all__ = ["SRSOP", "ParametricSRSOP", "conv_stack"]


class SRSOP(nn.Module):
    """iSQRT-COV pooling as a module: covariance -> Newton-Schulz sqrt -> upper triangle."""

    second_order = True
    batchable_pool = True  # pool() is parameter-free and shared by every instance

    def __init__(self, in_channels: int, iterations: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.iterations = int(iterations)
        self.out_features = triu_dim(in_channels)

    @property
    def pool_key(self) -> tuple:
        """Identifies the parameter-free pooling: instances with equal keys pool identically."""
        return ("srsop", self.iterations)

    def transform(self, x: Tensor) -> Tensor:
        return x

    def pool(self, x: Tensor) -> Tensor:
        return isqrt_cov(x, self.iterations)  # (B, d, H, W) -> (B, d(d+1)/2), float32

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, iterations={self.iterations}, out_features={self.out_features}"
        )


def conv_stack(
    in_channels: int, dims: Sequence[int], batchnorm: bool, bn_momentum: float = 0.1
) -> nn.Sequential:
    """1x1 conv (no bias) [-> BN] -> ReLU for each width in ``dims``: the P_j X steps of Eq. 6."""
    layers: list[nn.Module] = []
    c = in_channels
    for width in dims:
        layers.append(nn.Conv2d(c, width, kernel_size=1, bias=False))
        if batchnorm:
            layers.append(nn.BatchNorm2d(width, momentum=bn_momentum))
        layers.append(nn.ReLU(inplace=True))
        c = width
    return nn.Sequential(*layers)


class ParametricSRSOP(nn.Module):
    """Parametric SR-SOP component: ``conv_stack(dims)`` then SR-SOP on the last width."""

    second_order = True
    batchable_pool = True  # pool() is parameter-free and shared by every instance

    def __init__(
        self,
        in_channels: int,
        dims: Sequence[int] | None = None,
        batchnorm: bool = False,
        iterations: int = 3,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        dims = tuple(dims) if dims is not None else (2 * in_channels, 128)
        if not dims or any(int(w) < 1 for w in dims):
            raise ValueError(f"dims must be a non-empty list of positive widths, got {dims!r}")
        self.in_channels = in_channels
        self.dims = dims
        self.convs = conv_stack(in_channels, dims, batchnorm, bn_momentum)
        self.sop = SRSOP(dims[-1], iterations)
        self.out_features = self.sop.out_features

    @property
    def pool_key(self) -> tuple:
        return self.sop.pool_key

    def grouped_plan(self) -> GroupedPlan | None:
        """The convs as (out, in) matrices + ReLU, then SR-SOP; None with BatchNorm (per-CM statistics)."""
        convs = [m for m in self.convs if isinstance(m, nn.Conv2d)]
        if len(self.convs) != 2 * len(convs) or not all(isinstance(m, nn.ReLU) for m in self.convs[1::2]):
            return None  # BatchNorm (or a modified stack): run the module itself
        weights = tuple(c.weight.view(c.out_channels, c.in_channels) for c in convs)
        return GroupedPlan(weights, (None,) * len(weights), True, None, self.sop.pool, self.pool_key)

    def transform(self, x: Tensor) -> Tensor:
        return self.convs(x)  # (B, C, H, W) -> (B, dims[-1], H, W)

    def pool(self, x: Tensor) -> Tensor:
        return self.sop(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.transform(x))
