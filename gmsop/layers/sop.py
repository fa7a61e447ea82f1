"""Second-order pooling heads: SR-SOP (iSQRT-COV) and the paper's parametric SR-SOP (Eq. 6).

SR-SOP: (B, d, H, W) -> (B, d(d+1)/2), parameter-free; 8256-d for d = 128. Parametric SR-SOP:
J 1x1 convs P_j (each one step of the iterative generalised-Gaussian covariance estimate, Eq. 6-8)
with ReLU [and BN: ``cm_batchnorm``], then SR-SOP; default widths 2*in -> 128.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from gmsop.functional import isqrt_cov, triu_dim
from gmsop.layers.grouped import GroupedPlan, TransformPool, conv_stack


class SRSOP(TransformPool):
    """iSQRT-COV pooling as a module: covariance -> Newton-Schulz sqrt -> upper triangle."""

    second_order = True

    def __init__(self, in_channels: int, iterations: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.iterations = int(iterations)
        self.out_features = triu_dim(in_channels)
        self.pool_key = ("srsop", self.iterations)

    def pool(self, x: Tensor) -> Tensor:
        return isqrt_cov(x, self.iterations)  # (B, d, H, W) -> (B, d(d+1)/2), float32

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, iterations={self.iterations}, out_features={self.out_features}"
        )


class ParametricSRSOP(TransformPool):
    """Parametric SR-SOP component: ``conv_stack(dims)`` then SR-SOP on the last width."""

    second_order = True

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
        self.out_features, self.pool_key = self.sop.out_features, self.sop.pool_key

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
