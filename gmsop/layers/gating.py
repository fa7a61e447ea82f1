"""Sparsity-constrained gating (Eq. 2-3) and the balance loss (Eq. 4).

f = trunk(X) (B, D) (1x1 conv + BN + ReLU layers, then SR-SOP for GM-SOP or GAP, as released);
H = f W_g^T + gamma * softplus(f W_n^T) (B, N), noise in training only; w = softmax over the Top-K
of H (B, K), the other N-K weights 0. gamma ~ N(0, 1): one per image (``noise="per_image"``,
released code), one per logit (``"per_logit"``, the paper's Eq. 2), or ``"none"`` (an ablation,
no W_n). Balance loss: importance_i = sum_s w_i(X_s), L_B = alpha * CV^2(importance), unbiased.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmsop.layers.grouped import conv_stack
from gmsop.protocol import GATE_NOISES


class GateStats(NamedTuple):
    """What a gated mixture reports with its output (per forward pass)."""

    balance_loss: Tensor  # scalar, alpha-weighted CV^2: add it to the cross-entropy
    cv2: Tensor  # scalar, unweighted CV^2 of the importance
    counts: Tensor  # (N,) float: samples routed to each component in this batch (detached)
    importance: Tensor  # (N,) float: summed gate weights per component (detached)
    # Diagnostics (detached; None where a gate does not report them, e.g. a plug-in's):
    logit_spread: Tensor | None = None  # scalar: batch mean of the per-image std over N of the CLEAN logits
    noise_spread: Tensor | None = None  # the same of softplus(W_n f) (training only; 0 without noise)
    selected: Tensor | None = None  # (B, K) int64: the Top-K components of each image (detached)


class GateSpread(NamedTuple):
    """Spread of a batch's clean logits and noise scales: when ``noise`` is comparable to ``logit``,
    one gamma draw reorders the Top-K (reports/findings.md); the trainer logs both per epoch."""

    logit: Tensor  # scalar, detached
    noise: Tensor | None  # scalar, detached; 0 without noise; None in eval mode (W_n is not evaluated)


def selection_mask(selected: Tensor, num_experts: int) -> Tensor:
    """(B, K) Top-K indices -> (B, N) float mask, 1 where a component is selected for an image."""
    mask = selected.new_zeros(selected.shape[0], num_experts, dtype=torch.float32)
    return mask.scatter_(1, selected, 1.0)


def distinct_selections(selected: Tensor, num_experts: int) -> Tensor:
    """How many distinct Top-K sets a batch's images select (a scalar tensor, no host sync): shows a
    gate that barely depends on the image even when per-epoch routing totals look balanced."""
    mask = selection_mask(selected, num_experts)  # (B, N)
    same = (mask @ mask.T) == selected.shape[1]  # (B, B): identical Top-K sets
    earlier = torch.ones_like(same).tril_(diagonal=-1)  # j < i
    return (~(same & earlier).any(dim=1)).sum()


def cv_squared(importance: Tensor) -> Tensor:
    """(std / mean)^2 of a vector with the unbiased std; 0 for a single component."""
    if importance.numel() < 2:
        return importance.new_zeros(())
    imp = importance.to(torch.promote_types(importance.dtype, torch.float32))
    return imp.var(unbiased=True) / (imp.mean() ** 2 + 1e-10)


def _row_spread(t: Tensor) -> Tensor:
    """Batch mean of the per-row biased std of a (B, N) tensor, detached (a diagnostic)."""
    return t.detach().std(dim=1, unbiased=False).mean()


def gating_trunk(
    in_channels: int, pool: nn.Module, dims: Sequence[int], bn_momentum: float = 0.1
) -> nn.Sequential:
    """The gate's prediction layers, 1x1 conv (no bias) + BN + ReLU per width in ``dims``, then ``pool``."""
    return nn.Sequential(*conv_stack(in_channels, dims, True, bn_momentum), pool)


class NoisyTopKGate(nn.Module):
    """Noisy Top-K gate over ``num_experts`` components; W_g and W_n start at the constant 1/D.

    ``forward(x)`` returns (topk_weights (B, K), topk_indices (B, K) int64, dense (B, N)).
    """

    def __init__(self, trunk: nn.Module, feat_dim: int, num_experts: int, k: int, noise: str = "per_image"):
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"number of components N must be >= 1, got {num_experts!r}")
        if not 1 <= k <= num_experts:
            raise ValueError(f"K must satisfy 1 <= K <= N (N={num_experts}), got K={k!r}")
        if noise not in GATE_NOISES:
            raise ValueError(f"noise must be one of {GATE_NOISES}, got {noise!r}")
        self.trunk, self.feat_dim = trunk, feat_dim
        self.num_experts, self.k, self.noise = num_experts, k, noise
        self.w_gate = nn.Parameter(torch.full((num_experts, feat_dim), 1.0 / feat_dim))
        # No noise, no noise weights: the ablation's parameter count is that of its model.
        self.w_noise = (
            nn.Parameter(torch.full((num_experts, feat_dim), 1.0 / feat_dim)) if noise != "none" else None
        )

    def route(self, x: Tensor) -> tuple[Tensor, GateSpread]:
        """Noisy logits H (B, N), float32 at least (routing must not flip on bf16 rounding), and the
        batch's ``GateSpread``."""
        f = self.trunk(x)  # (B, C, H, W) -> (B, D)
        with torch.autocast(device_type=f.device.type, enabled=False):
            dtype = torch.promote_types(torch.promote_types(f.dtype, self.w_gate.dtype), torch.float32)
            f = f.to(dtype)
            clean = F.linear(f, self.w_gate.to(dtype))  # (B, N)
            if self.w_noise is None:
                return clean, GateSpread(_row_spread(clean), clean.new_zeros(()))
            if not self.training:  # no noise, and no W_n product at inference: its spread is not known
                return clean, GateSpread(_row_spread(clean), None)
            scale = F.softplus(F.linear(f, self.w_noise.to(dtype)))  # (B, N)
            shape = (f.shape[0], 1) if self.noise == "per_image" else clean.shape
            gamma = torch.randn(shape, device=f.device, dtype=f.dtype)
            return clean + gamma * scale, GateSpread(_row_spread(clean), _row_spread(scale))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.forward_with_spread(x)[:3]

    def forward_with_spread(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, GateSpread]:
        """``forward``'s (topk_weights, topk_indices, dense) and the batch's ``GateSpread``."""
        h, spread = self.route(x)  # (B, N)
        top_vals, top_idx = self.select(h)  # (B, K)
        top_w = torch.softmax(top_vals, dim=1)  # (B, K)
        dense = torch.zeros_like(h).scatter(1, top_idx, top_w)  # (B, N), zeros off the Top-K
        return top_w, top_idx, dense, spread

    def select(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """The K largest logits per row and their indices, ties broken at random in training: at
        init all logits of a row are equal, and ``topk``'s positional tie-break would send every
        image to the same K components (the others would never train). Eval stays deterministic."""
        if not self.training:
            return h.topk(self.k, dim=1)
        perm = torch.rand(h.shape, device=h.device).argsort(dim=1)  # (B, N) random column order
        top_vals, pos = h.gather(1, perm).topk(self.k, dim=1)  # (B, K)
        return top_vals, perm.gather(1, pos)

    def extra_repr(self) -> str:
        return f"feat_dim={self.feat_dim}, num_experts={self.num_experts}, k={self.k}, noise={self.noise!r}"
