"""Mixtures of component models (CMs) over one backbone map: Ave-N and the gated GM-N-K.

AverageMixture (Ave-N): y = (1/N) sum_i M_i(X); every CM sees every sample (dense, costly).
GatedMixture (GM-N-K, Eq. 1-4): y = sum_{i in TopK} w_i(X) M_i(X), executed sparsely: each CM
runs only on the samples routed to it, so a step costs K (not N) component evaluations per
image plus the gate. Its forward returns ``(y, GateStats)``; the balance loss in the stats is
already weighted by alpha (alpha/B with ``alpha_per_batch``, the released code's scaling).

Both accept any component modules with equal ``out_features``. When the components share a
parameter-free pooling step (``batchable_pool``: the SR-SOP and GAP families), each CM only
runs its own ``transform`` on its samples and all routed samples are pooled in ONE batched call
(one Newton-Schulz over B*K matrices instead of N small ones).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gmsop.layers.gating import GateStats, NoisyTopKGate, cv_squared

__all__ = ["AverageMixture", "GatedMixture"]


def _check_components(components: Sequence[nn.Module]) -> int:
    if len(components) < 1:
        raise ValueError("a mixture needs at least one component")
    dims = {int(c.out_features) for c in components}
    if len(dims) != 1:
        raise ValueError(f"all components must have the same out_features, got {sorted(dims)}")
    return dims.pop()


def _shared_pool(components: Sequence[nn.Module]) -> bool:
    """True when every CM is ``transform`` + the same parameter-free ``pool``."""
    first = components[0]
    return all(type(c) is type(first) for c in components) and getattr(first, "batchable_pool", False)


class AverageMixture(nn.Module):
    """Ave-N: the plain average of N components (no gate, no balance loss)."""

    mixture = True

    def __init__(self, components: Sequence[nn.Module]):
        super().__init__()
        self.out_features = _check_components(components)
        self.components = nn.ModuleList(components)
        self.second_order = any(getattr(c, "second_order", False) for c in components)

    def forward(self, x: Tensor) -> Tensor:
        n, b = len(self.components), x.shape[0]
        if _shared_pool(self.components):
            z = torch.cat([c.transform(x) for c in self.components])  # (N*B, C', H, W)
            pooled = self.components[0].pool(z)  # (N*B, D)
            return pooled.view(n, b, -1).mean(dim=0)  # (B, D)
        return torch.stack([c(x) for c in self.components]).mean(dim=0)  # (N, B, D) -> (B, D)


class GatedMixture(nn.Module):
    """GM-N-K: Top-K gated, sparsely executed mixture with the balance loss of Eq. 4."""

    mixture = True

    def __init__(self, components: Sequence[nn.Module], gate: NoisyTopKGate, alpha: float = 100.0, alpha_per_batch: bool = True):
        super().__init__()
        self.out_features = _check_components(components)
        if gate.num_experts != len(components):
            raise ValueError(f"gate has {gate.num_experts} outputs but there are {len(components)} components")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        self.components = nn.ModuleList(components)
        self.gate = gate
        self.alpha, self.alpha_per_batch = float(alpha), bool(alpha_per_batch)
        self.second_order = any(getattr(c, "second_order", False) for c in components)

    @property
    def num_experts(self) -> int:
        return len(self.components)

    @property
    def k(self) -> int:
        return self.gate.k

    def forward(self, x: Tensor) -> tuple[Tensor, GateStats]:
        b, k, n = x.shape[0], self.gate.k, self.num_experts
        top_w, top_idx, dense = self.gate(x)  # (B, K), (B, K), (B, N)
        flat_idx = top_idx.flatten()  # (B*K,) component of each (sample, slot)
        order = torch.argsort(flat_idx, stable=True)  # slots grouped by component
        sample = order // k  # (B*K,) sample index of each grouped slot
        counts = torch.zeros(n, device=x.device, dtype=torch.long).index_add_(0, flat_idx, torch.ones_like(flat_idx))
        groups = torch.split(sample, counts.tolist())  # one host sync per forward
        active = [(c, g) for c, g in zip(self.components, groups) if g.numel() > 0]
        if _shared_pool(self.components):
            z = torch.cat([c.transform(x.index_select(0, g)) for c, g in active])  # (B*K, C', H, W)
            pooled = self.components[0].pool(z)  # (B*K, D)
        else:
            pooled = torch.cat([c(x.index_select(0, g)) for c, g in active])  # (B*K, D)
        w = top_w.flatten().index_select(0, order).to(pooled.dtype)  # (B*K,)
        y = pooled.new_zeros(b, pooled.shape[1]).index_add_(0, sample, pooled * w[:, None])  # (B, D)

        importance = dense.sum(dim=0)  # (N,)
        cv2 = cv_squared(importance)
        alpha = self.alpha / b if self.alpha_per_batch else self.alpha
        stats = GateStats(alpha * cv2, cv2.detach(), counts.detach().float(), importance.detach())
        return y, stats

    def extra_repr(self) -> str:
        return f"N={self.num_experts}, K={self.k}, alpha={self.alpha}, alpha_per_batch={self.alpha_per_batch}"
