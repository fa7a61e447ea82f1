"""Mixtures of component models (CMs) over one backbone map: Ave-N and the gated GM-N-K.

AverageMixture (Ave-N): y = (1/N) sum_i M_i(X). GatedMixture (GM-N-K, Eq. 1-4):
y = sum_{i in TopK} w_i(X) M_i(X), each CM run only on the samples routed to it; it returns
``(y, GateStats)`` with the alpha-weighted balance loss. Two execution paths give the same outputs,
statistics and gradients: ``grouped`` (default off the CPU; components describing themselves by a
``GroupedPlan``: all B*K routed pairs as one batched matmul on stacked weights, no host sync) and
``generic`` (any module: routed samples sorted by component, each component called on its block).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gmsop.layers.gating import GateStats, NoisyTopKGate, cv_squared
from gmsop.layers.grouped import GroupedPlan

_PATHS = ("auto", "grouped", "generic")


def _pool_key(c: nn.Module):
    return (type(c), getattr(c, "pool_key", None))


def _definer(cls: type, name: str) -> int:
    """Position in ``cls.__mro__`` of the class that defines ``name`` (len(mro) if none)."""
    mro = cls.__mro__
    return next((i for i, k in enumerate(mro) if name in vars(k)), len(mro))


def _shared_pool(components: Sequence[nn.Module]) -> bool:
    """True when every CM is ``transform`` + the same parameter-free ``pool`` (and a subclass has not
    redefined ``forward`` below them)."""
    first, cls = components[0], type(components[0])
    key = _pool_key(first)
    return (
        getattr(first, "batchable_pool", False)
        and _definer(cls, "forward") >= max(_definer(cls, "transform"), _definer(cls, "pool"))
        and all(_pool_key(c) == key for c in components)
    )


def _plan_of(c: nn.Module) -> GroupedPlan | None:
    fn = getattr(c, "grouped_plan", None)
    if not callable(fn):
        return None
    # A subclass that redefines what the module computes, but not its plan, runs as a module.
    owner = _definer(type(c), "grouped_plan")
    if any(_definer(type(c), name) < owner for name in ("forward", "transform", "pool")):
        return None
    return fn()


def _has_hooks(module: nn.Module) -> bool:
    return any(
        m._forward_hooks
        or m._forward_pre_hooks
        or m._backward_hooks
        or getattr(m, "_backward_pre_hooks", None)
        for m in module.modules()
    )


def _grouped_plans(components: Sequence[nn.Module]) -> list[GroupedPlan] | None:
    """One plan per component when all of them can run batched together, else None."""
    first = components[0]
    if any(type(c) is not type(first) for c in components) or any(_has_hooks(c) for c in components):
        return None
    plans = [_plan_of(c) for c in components]
    if any(p is None for p in plans):
        return None
    sig = plans[0].signature
    return plans if all(p.signature == sig for p in plans) else None


def _gather(weight: Tensor, idx: Tensor) -> Tensor:
    """weight[idx] along dim 0 (indexing copies faster than index_select on the CPU)."""
    return weight[idx] if weight.device.type == "cpu" else weight.index_select(0, idx)


class _RoutedBmm(torch.autograd.Function):
    """out[p] = W[idx[p]] @ h[p // r] for every routed pair p: one batched matmul. weight (N, O, I),
    idx (P,), h (P / r, I, M) (r = K in the first layer, 1 after); the gathered weights are not saved."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, idx: Tensor) -> Tensor:
        n_in = h.shape[0]
        w = _gather(weight, idx).view(n_in, -1, weight.shape[-1])  # (P/r, r*O, I)
        out = torch.bmm(w.to(h.dtype), h)  # (P/r, r*O, M)
        ctx.save_for_backward(weight, idx, h)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, idx, h = ctx.saved_tensors
        n_in, _, m = h.shape
        grad = grad.reshape(n_in, -1, m)  # (P/r, r*O, M)
        d_weight = d_h = None
        if ctx.needs_input_grad[0]:
            w = _gather(weight, idx).view(n_in, -1, weight.shape[-1]).to(grad.dtype)
            d_h = torch.bmm(w.mT, grad)  # (P/r, I, M)
        if ctx.needs_input_grad[1]:  # per-pair products, summed per component in the weight dtype
            d_w = torch.bmm(grad, h.mT.to(grad.dtype)).view(idx.shape[0], *weight.shape[1:])  # (P, O, I)
            d_weight = torch.zeros_like(weight).index_add_(0, idx, d_w.to(weight.dtype))
        return d_h, d_weight, None


def _routed_bmm(weight: Tensor, idx: Tensor, h: Tensor) -> Tensor:
    """``_RoutedBmm`` in the autocast dtype (if autocast is on), with autocast off inside: (P, O, M)."""
    device = h.device.type
    if torch.is_autocast_enabled(device):
        h = h.to(torch.get_autocast_dtype(device))
    with torch.autocast(device_type=device, enabled=False):
        out = _RoutedBmm.apply(h, weight, idx)  # (P/r, r*O, M)
    return out.view(idx.shape[0], weight.shape[1], h.shape[-1])


def _run_grouped(plans: list[GroupedPlan], x: Tensor, idx: Tensor) -> Tensor:
    """Every (sample, slot) pair through its component: x (B, C, H, W), idx (B*K,) -> (B*K, D)."""
    plan = plans[0]
    h = plan.pre_pool(x) if plan.pre_pool is not None else x.reshape(*x.shape[:2], -1)  # (B, C, M)
    for layer in range(len(plan.weights)):
        h = _routed_bmm(torch.stack([p.weights[layer] for p in plans]), idx, h)  # (B*K, O, M)
        if plan.biases[layer] is not None:
            h = h + torch.stack([p.biases[layer] for p in plans]).index_select(0, idx)[:, :, None]
        if plan.relu:
            h = torch.relu_(h)
    return plan.post_pool(h) if plan.post_pool is not None else h.flatten(1)


class _Mixture(nn.Module):
    """N components with equal ``out_features`` over one backbone map."""

    mixture = True

    def __init__(self, components: Sequence[nn.Module]):
        super().__init__()
        if len(components) < 1:
            raise ValueError("a mixture needs at least one component")
        dims = {int(c.out_features) for c in components}
        if len(dims) != 1:
            raise ValueError(f"all components must have the same out_features, got {sorted(dims)}")
        self.out_features = dims.pop()
        self.components = nn.ModuleList(components)
        self.second_order = any(getattr(c, "second_order", False) for c in components)

    @property
    def num_experts(self) -> int:
        return len(self.components)

    def _run(self, pairs: list[tuple[nn.Module, Tensor]]) -> Tensor:
        """Each component on its input, outputs concatenated (pooled in one call where they share it)."""
        if _shared_pool(self.components):
            return self.components[0].pool(torch.cat([c.transform(h) for c, h in pairs]))
        return torch.cat([c(h) for c, h in pairs])


class AverageMixture(_Mixture):
    """Ave-N: the plain average of N components (no gate, no balance loss)."""

    def forward(self, x: Tensor) -> Tensor:
        pooled = self._run([(c, x) for c in self.components])  # (N*B, D)
        return pooled.view(self.num_experts, x.shape[0], -1).mean(dim=0)  # (B, D)


class GatedMixture(_Mixture):
    """GM-N-K: Top-K gated, sparsely executed mixture with the balance loss of Eq. 4."""

    def __init__(
        self,
        components: Sequence[nn.Module],
        gate: NoisyTopKGate,
        alpha: float = 100.0,
        alpha_per_batch: bool = True,
        execution: str = "auto",
    ):
        super().__init__(components)
        if gate.num_experts != len(components):
            raise ValueError(
                f"gate has {gate.num_experts} outputs but there are {len(components)} components"
            )
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if execution not in _PATHS:
            raise ValueError(f"execution must be one of {_PATHS}, got {execution!r}")
        self.gate = gate
        self.alpha, self.alpha_per_batch = float(alpha), bool(alpha_per_batch)
        self.execution = execution

    @property
    def k(self) -> int:
        return self.gate.k

    def forward(self, x: Tensor) -> tuple[Tensor, GateStats]:
        b, k, n = x.shape[0], self.gate.k, self.num_experts
        top_w, top_idx, dense, spread = self.gate.forward_with_spread(x)  # (B, K), (B, K), (B, N)
        flat_idx = top_idx.flatten()  # (B*K,) component of each (sample, slot)
        counts = torch.zeros(n, device=x.device, dtype=torch.long).index_add_(
            0, flat_idx, torch.ones_like(flat_idx)
        )
        plans = _grouped_plans(self.components)
        if self._path(x.device, plans) == "grouped":
            pooled = _run_grouped(plans, x, flat_idx)  # (B*K, D), (sample, slot) order
            with torch.autocast(device_type=x.device.type, enabled=False):  # keep the pooled dtype
                y = torch.bmm(top_w.to(pooled.dtype).view(b, 1, k), pooled.view(b, k, -1)).view(b, -1)
        else:  # each component on its own routed samples (one host sync for the block sizes)
            order = torch.argsort(flat_idx, stable=True)  # slots grouped by component
            sample = order // k  # (B*K,) sample index of each grouped slot
            blocks = x.index_select(0, sample).split(counts.tolist())
            pooled = self._run([(c, h) for c, h in zip(self.components, blocks) if h.shape[0] > 0])
            w = top_w.flatten().index_select(0, order).to(pooled.dtype)  # (B*K,)
            y = pooled.new_zeros(b, pooled.shape[1]).index_add_(0, sample, pooled * w[:, None])  # (B, D)

        importance = dense.sum(dim=0)  # (N,)
        cv2 = cv_squared(importance)
        alpha = self.alpha / b if self.alpha_per_batch else self.alpha
        stats = (alpha * cv2, cv2.detach(), counts.detach().float(), importance.detach(), *spread)
        return y, GateStats(*stats, top_idx.detach())

    def execution_path(self, device: torch.device | str) -> str:
        """'grouped' or 'generic' (see the module docstring): the path a forward on ``device`` takes."""
        return self._path(torch.device(device), _grouped_plans(self.components))

    def _path(self, device: torch.device, plans) -> str:
        if plans is None:
            return "generic"
        if self.execution != "auto":
            return self.execution
        # On the CPU a component's block is a large GEMM and nothing needs syncing: generic is faster.
        return "generic" if device.type == "cpu" else "grouped"

    def extra_repr(self) -> str:
        return (
            f"N={self.num_experts}, K={self.k}, alpha={self.alpha}, alpha_per_batch={self.alpha_per_batch}, "
            f"execution={self.execution!r}"
        )
