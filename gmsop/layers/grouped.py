"""Building blocks shared by the layers (below all of them, so the layers import without a cycle):
the 1x1 conv stack, the ``TransformPool`` base and the ``GroupedPlan`` a mixture batches with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn


def conv_stack(
    in_channels: int, dims: Sequence[int], batchnorm: bool, bn_momentum: float = 0.1
) -> nn.Sequential:
    """1x1 conv (no bias) [-> BN] -> ReLU for each width in ``dims`` (the P_j X steps of Eq. 6)."""
    layers: list[nn.Module] = []
    c = in_channels
    for width in dims:
        layers.append(nn.Conv2d(c, width, kernel_size=1, bias=False))
        if batchnorm:
            layers.append(nn.BatchNorm2d(width, momentum=bn_momentum))
        layers.append(nn.ReLU(inplace=True))
        c = width
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class GroupedPlan:
    """What a component computes, in a form a mixture can batch over components.

    ``pre_pool(x)`` (parameter-free, (B, C, H, W) -> (B, C, M'); None: flatten) -> per layer
    h <- W h (+ b) [ReLU], W an (out, in) matrix on the channels -> ``post_pool(h)``
    (parameter-free, (P, O, M') -> (P, D); None: flatten). Components batch together only when
    their ``key`` (the parameter-free parts) and weight shapes are equal.
    """

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor | None, ...]
    relu: bool
    pre_pool: Callable[[Tensor], Tensor] | None
    post_pool: Callable[[Tensor], Tensor] | None
    key: tuple

    @property
    def signature(self) -> tuple:
        shapes = tuple(tuple(w.shape) for w in self.weights)
        return (self.key, shapes, tuple(b is None for b in self.biases), self.relu)


class TransformPool(nn.Module):
    """A head computed as ``pool(transform(x))``, ``pool`` parameter-free and shared by all instances
    with the same ``pool_key``: a mixture pools all components' samples in one call."""

    batchable_pool = True

    def transform(self, x: Tensor) -> Tensor:
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.transform(x))
