"""Sparsity-constrained gating (Eq. 2-3) and the balance loss (Eq. 4).

Given the backbone map X (B, C, H, W):

    f = trunk(X)                                   (B, D): prediction layers + pooling
    H = f W_g^T + gamma * softplus(f W_n^T)        (B, N) noisy logits, Eq. 2 (training only)
    w = softmax over the Top-K entries of H        (B, K); the other N-K weights are 0 (Eq. 3)

The trunk has the same form as the components (1x1 conv C->2C + BN + ReLU, 1x1 conv 2C->128
+ BN + ReLU, then SR-SOP for GM-SOP or GAP for GM-GAP), as in the released code; its widths are
a list (``gating_trunk(dims=...)``), so the released WRN-36-2 GM-GAP gate, ONE 1x1 conv
256->512 + BN + ReLU then GAP (a 512-d feature, ``cnn_init_WRN_GM.m``), is ``dims=[512]``.
W_g and W_n start at the constant 1/D, so the very first Top-K is a tie, broken at random
per image in training (``NoisyTopKGate.select``; a positional tie-break would route every image
to the same K components and leave the others untrained). gamma ~ N(0, 1):
one scalar per image shared by the N logits (``noise="per_image"``, released code) or one per
logit (``"per_logit"``, the paper's Eq. 2 read as in Shazeer et al.), or none at all
(``"none"``: an ablation in neither reading, without W_n). No noise in eval mode, so evaluation
is deterministic. Why the ablation exists: W_n learns from gamma-weighted gradients, so early in
training its rows drift apart at random and the noise reorders mid-ranked components from step
to step; on short CPU schedules that can slow GM models (reports/findings.md).
The same noisy logits select and weigh; unselected logits get no gradient because only the K
kept values enter the softmax.

Balance loss: importance_i = sum_s w_i(X_s); L_B = alpha * (std(importance) / mean)^2 with the
unbiased (N-1) std. ``alpha_per_batch`` divides alpha by the batch size (the released code puts
alpha on a batch-summed cross-entropy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmsop.protocol import GATE_NOISES

__all__ = [
    "GateSpread",
    "GateStats",
    "NoisyTopKGate",
    "balance_loss",
    "cv_squared",
    "gating_trunk",
    "selection_mask",
    "distinct_selections",
]


class GateStats(NamedTuple):
    """What a gated mixture reports with its output (per forward pass)."""

    balance_loss: Tensor  # scalar, alpha-weighted CV^2: add it to the cross-entropy
    cv2: Tensor  # scalar, unweighted CV^2 of the importance
    counts: Tensor  # (N,) float: samples routed to each component in this batch (detached)
    importance: Tensor  # (N,) float: summed gate weights per component (detached)
    # Diagnostics (detached; None where a gate does not report them, e.g. a plug-in's):
    logit_spread: Tensor | None = None  # scalar: batch mean of the per-image std over N of the CLEAN logits
    noise_spread: Tensor | None = (
        None  # scalar: the same of the noise scale softplus(W_n f) (training only; 0 without noise)
    )
    selected: Tensor | None = None  # (B, K) int64: the Top-K components of each image (detached)


class GateSpread(NamedTuple):
    """How far apart a batch's clean logits and noise scales are (``NoisyTopKGate.route``).

    Why: the gate's routing is only as stable as its clean logits are spread. Per image, the
    noise moves logit i by gamma * scale_i, so when ``noise`` (the spread of the scales) is
    comparable to ``logit`` (the spread of the clean logits), one gamma draw reorders the Top-K.
    A GM run whose clean spread collapses towards 0 routes on tiny differences and trains
    slowly (reports/findings.md); the trainer logs both per epoch.
    """

    logit: Tensor  # scalar, detached
    noise: Tensor | None  # scalar, detached; 0 without noise; None in eval mode (W_n is not evaluated)


def selection_mask(selected: Tensor, num_experts: int) -> Tensor:
    """(B, K) Top-K indices -> (B, N) float mask, 1 where a component is selected for an image."""
    mask = selected.new_zeros(selected.shape[0], num_experts, dtype=torch.float32)
    return mask.scatter_(1, selected, 1.0)


def distinct_selections(selected: Tensor, num_experts: int) -> Tensor:
    """How many distinct Top-K sets a batch's images select (a scalar tensor, no host sync).

    Why: per-epoch routing totals can look balanced while, per batch, every image goes to the
    same few components and the gate barely depends on the image; this count shows it. Image i
    opens a new set unless an earlier image selected exactly the same K components (pairwise
    overlap of the selection masks equals K).
    """
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


def balance_loss(weights: Tensor, alpha: float) -> Tensor:
    """Eq. 4 on dense gate weights (B, N): alpha * CV^2 of the per-component importance."""
    return alpha * cv_squared(weights.sum(dim=0))


def _row_spread(t: Tensor) -> Tensor:
    """Batch mean of the per-row std (biased, over the N columns) of a (B, N) tensor, 0 for a
    single column. Detached: a diagnostic, not a loss."""
    return t.detach().std(dim=1, unbiased=False).mean()


def gating_trunk(
    in_channels: int,
    pool: nn.Module,
    hidden: int | None = None,
    out: int = 128,
    bn_momentum: float = 0.1,
    *,
    dims: Sequence[int] | None = None,
) -> nn.Sequential:
    """The gate's prediction layers, then ``pool``: one 1x1 conv (no bias) + BN + ReLU per width.

    ``dims`` lists the widths (the gate feature is ``dims[-1]`` channels before pooling); None
    means ``(hidden, out)``: conv C->hidden+BN+ReLU, conv hidden->out+BN+ReLU (``hidden``
    defaults to 2C), the released ResNet gates. Layers are created in order, so a given ``dims``
    always gives the same modules and, under one seed, the same weights.
    """
    widths = [int(w) for w in dims] if dims is not None else [hidden or 2 * in_channels, out]
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"gate widths must be a non-empty list of positive integers, got {dims!r}")
    layers: list[nn.Module] = []
    for c_in, c_out in zip([in_channels, *widths[:-1]], widths):
        layers += [
            nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
            nn.BatchNorm2d(c_out, momentum=bn_momentum),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers, pool)


class NoisyTopKGate(nn.Module):
    """Noisy Top-K gate over ``num_experts`` components.

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
        self.trunk = trunk
        self.num_experts, self.k, self.noise = num_experts, k, noise
        self.feat_dim = feat_dim
        self.w_gate = nn.Parameter(torch.empty(num_experts, feat_dim))
        # No noise, no noise weights: the ablation's parameter count is that of its model.
        self.w_noise = nn.Parameter(torch.empty(num_experts, feat_dim)) if noise != "none" else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.w_gate, 1.0 / self.feat_dim)
        if self.w_noise is not None:
            nn.init.constant_(self.w_noise, 1.0 / self.feat_dim)

    def logits(self, x: Tensor) -> Tensor:
        """Noisy logits H (B, N) in float32 at least (float64 in a float64 model): routing must
        not flip on bf16 rounding."""
        return self.route(x)[0]

    def route(self, x: Tensor) -> tuple[Tensor, GateSpread]:
        """Logits H (B, N) as ``logits`` and the batch's ``GateSpread`` (one trunk pass)."""
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
        """The K largest logits per row and their indices, ties broken at random in training.

        ``torch.topk`` breaks ties by position, always the same way. At initialisation every
        logit of a row is equal (constant W_g, and per-image noise adds the same value to all
        N), and components never selected keep identical gate rows, so a positional tie-break
        sends EVERY image to the same K components and the other N-K never train: they get no
        gradient from the cross-entropy, and the balance loss gives none either while all
        selected weights are equal. Selecting in a random column order per row makes each tie
        a uniform random choice (the released code's "random tie-break") and changes nothing
        when the logits differ. Evaluation keeps the positional order, so it stays deterministic.
        """
        if not self.training:
            return h.topk(self.k, dim=1)
        perm = torch.rand(h.shape, device=h.device).argsort(dim=1)  # (B, N) random column order
        top_vals, pos = h.gather(1, perm).topk(self.k, dim=1)  # (B, K)
        return top_vals, perm.gather(1, pos)

    def extra_repr(self) -> str:
        return f"feat_dim={self.feat_dim}, num_experts={self.num_experts}, k={self.k}, noise={self.noise!r}"
