"""SGD with momentum and weight decay exactly as ``torch.optim.SGD`` computes it, minus the compiler import.

Why not ``torch.optim.SGD`` itself: every ``torch.optim.Optimizer`` wraps ``add_param_group``,
``zero_grad``, ``state_dict`` and ``step`` for ``torch.compile``, and the first call of any of
them imports ``torch._dynamo``: about 1.3 s of each job's start-up on the CPU (issue 17), in a
process that never compiles. This class keeps the same ``param_groups`` and ``state`` and steps
through torch's own functional update (``torch.optim.sgd.sgd``: the same kernels, foreach or
per-tensor as torch picks), under ``no_grad`` as ``torch.optim.SGD.step`` runs. Its
``state_dict`` has ``torch.optim.SGD``'s layout, so a checkpoint written by either loads into the
other. ``tests/test_sgd.py`` checks parameters, momentum buffers and state dicts bit for bit
against ``torch.optim.SGD``.

Only what training here uses: dense gradients, constant (float) hyper-parameters per group, no
closure, no fused or differentiable mode; anything else raises ValueError naming it.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim.sgd import sgd as _functional_sgd

__all__ = ["SGD"]

#: A group's keys, in ``torch.optim.SGD``'s order, with its defaults.
_GROUP_DEFAULTS = {
    "lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, "maximize": False,
    "foreach": None, "differentiable": False, "fused": None,
}


class SGD:
    """``torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov, maximize=, foreach=)``."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None):
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"SGD: {name} must be a number >= 0, got {value!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        self.defaults: dict[str, Any] = dict(_GROUP_DEFAULTS, lr=lr, momentum=momentum, dampening=dampening,
                                             weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                                             foreach=foreach)
        self.state: dict[Tensor, dict[str, Tensor]] = {}
        self.param_groups: list[dict[str, Any]] = []
        params = list(params)
        if not params:
            raise ValueError("SGD: got an empty parameter list")
        for group in params if isinstance(params[0], dict) else [{"params": params}]:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        unknown = sorted(set(group) - set(_GROUP_DEFAULTS) - {"params"})
        if unknown:
            raise ValueError(f"SGD: unknown parameter-group option(s) {unknown}")
        if group.get("differentiable") or group.get("fused"):
            raise ValueError("SGD: differentiable and fused modes are not supported here; use torch.optim.SGD")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in group["params"]:
            if not isinstance(p, Tensor) or not p.is_leaf:
                raise ValueError(f"SGD: can only optimise leaf tensors, got {type(p).__name__}")
            if id(p) in seen:
                raise ValueError("SGD: some parameters appear in more than one parameter group")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append({k: group[k] for k in ("params", *_GROUP_DEFAULTS)})

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params, grads, buffers = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError("SGD: sparse gradients are not supported here; use torch.optim.SGD")
                params.append(p)
                grads.append(p.grad)
                if group["momentum"] != 0:
                    buffers.append(self.state.get(p, {}).get("momentum_buffer"))
            if not params:
                continue
            _functional_sgd(params, grads, buffers, weight_decay=group["weight_decay"], momentum=group["momentum"],
                            lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"],
                            maximize=group["maximize"], has_sparse_grad=False, foreach=group["foreach"],
                            fused=group["fused"])  # both None: torch's own default (foreach on CUDA)
            if group["momentum"] != 0:
                for p, buf in zip(params, buffers, strict=True):
                    self.state.setdefault(p, {})["momentum_buffer"] = buf

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.SGD.state_dict()``'s layout: parameters numbered across groups in order."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": [index[id(p)] for p in group["params"]]})
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this class or of ``torch.optim.SGD`` (same groups, same sizes)."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(f"SGD: the state dict has {len(saved)} parameter group(s), this optimiser "
                             f"{len(self.param_groups)}")
        if any(len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)):
            raise ValueError("SGD: the state dict's parameter groups differ in size from this optimiser's")
        params = {i: p for s, g in zip(saved, self.param_groups) for i, p in zip(s["params"], g["params"])}
        self.state = {}
        for i, values in state_dict["state"].items():
            p = params[int(i)]
            # copies (as torch casts them to the parameter's dtype and device): never shared with the dict
            self.state[p] = {k: v.to(device=p.device, dtype=p.dtype if p.is_floating_point() else v.dtype, copy=True)
                             if isinstance(v, Tensor) else v for k, v in values.items()}
        for s, g in zip(saved, self.param_groups):
            g.update({k: v for k, v in s.items() if k != "params" and k in _GROUP_DEFAULTS})

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in _GROUP_DEFAULTS]
        return "\n".join(lines + [")"])
