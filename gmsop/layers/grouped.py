"""``GroupedPlan``: how a component describes itself so a mixture can batch it over components.

It lives in its own module, below every layer that returns one (gap.py, sop.py, experts.py)
and the mixture that consumes them (mixture.py), so the components import it at the top and
mixture.py needs none of them: the layers form a tree, not a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

__all__ = ["GroupedPlan"]


@dataclass(frozen=True)
class GroupedPlan:
    """What a component computes, in a form a mixture can batch over components.

    ``pre_pool(x)`` (optional, parameter-free: (B, C, H, W) -> (B, C, M'); default: flatten to
    (B, C, H*W)) -> for each layer: h <- W h (+ b) [ReLU] with W an (out, in) matrix acting on
    the channels -> ``post_pool(h)`` (optional, parameter-free: (P, O, M') of any strides ->
    (P, D); default: flatten). ``key`` identifies the parameter-free parts: components batch
    together only when their keys and weight shapes are equal.
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
