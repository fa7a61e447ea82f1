"""Head families by name: ``create_head("gm_sop", in_channels=128, protocol=OFFICIAL, num_experts=16, k=8)``.

A head maps the backbone map (B, C, H, W) to a representation (B, out_features); mixtures
return ``(representation, GateStats)``. Every head states ``out_features``, ``second_order``
(the backbone's last stride follows it) and ``mixture`` (the classifier adds BN + dropout).

Built-in families and their keyword arguments (defaults in brackets):
    gap        -                                    GAP, C-d
    pgap       width [512]                          1x1 conv -> ReLU -> GAP ("ResNet-18-Xd")
    srsop      -                                    iSQRT-COV, C(C+1)/2-d
    psrsop     dims [(2C, sop_dim)]                 parametric SR-SOP (J convs, Eq. 6)
    ave_gap    num_experts [16], width [512]        Ave-N of parametric GAPs
    ave_sop    num_experts [16], dims, sop_dim      Ave-N of parametric SR-SOPs
    gm_gap     num_experts [16], k [8], width       GM-GAP-N-K
    gm_sop     num_experts [16], k [8], dims        GM-SOP-N-K
    sg_moe     num_experts [16], k [8], width [512] One-layer SG-MoE (linear experts on GAP)

``sop_dim`` (128) is the width entering every second-order pooling and the gate's trunk
output; ``width`` (512) the parametric GAP / expert width. ``build_model(width_mult=m)``
scales both (and the backbone), for CPU-sized experiments.
    netvlad    clusters [64]                        NetVLAD, K*C-d

Protocol values used: ns_iterations, cm_batchnorm, gate_noise, alpha, alpha_per_batch,
bn_momentum. A user head class is registered with ``register_head(name, cls)``; its
constructor receives ``in_channels`` (and ``protocol`` if it accepts that argument).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from gmsop.layers import (
    GAP,
    SRSOP,
    AverageMixture,
    GatedMixture,
    LinearExpert,
    NetVLAD,
    NoisyTopKGate,
    ParametricGAP,
    ParametricSRSOP,
    gating_trunk,
)
from gmsop.layers.gap import global_avg_pool
from gmsop.protocol import Protocol

__all__ = ["HEADS", "create_head", "get_head", "head_kwargs", "register_head"]


class _Pool(nn.Module):
    """GAP as a module, for the end of the gate's trunk."""

    def forward(self, x):
        return global_avg_pool(x)


def _gate(in_channels: int, p: Protocol, num_experts: int, k: int, second_order: bool, out: int = 128) -> NoisyTopKGate:
    if second_order:  # GM-SOP: the gate's prediction layers end in a full SR-SOP (8256-d)
        pool = SRSOP(out, p.ns_iterations)
        feat = pool.out_features
    else:  # GM-GAP / SG-MoE: ... ending in GAP (128-d)
        pool, feat = _Pool(), out
    trunk = gating_trunk(in_channels, pool, hidden=2 * in_channels, out=out, bn_momentum=p.bn_momentum)
    return NoisyTopKGate(trunk, feat, num_experts, k, noise=p.gate_noise)


def _psrsop(c: int, p: Protocol, dims=None, sop_dim=128) -> ParametricSRSOP:
    dims = dims if dims is not None else (2 * c, int(sop_dim))
    return ParametricSRSOP(c, dims, batchnorm=p.cm_batchnorm, iterations=p.ns_iterations, bn_momentum=p.bn_momentum)


def _gap(c, p):
    return GAP(c)


def _pgap(c, p, width=512):
    return ParametricGAP(c, width)


def _srsop(c, p):
    return SRSOP(c, p.ns_iterations)


def _ave_gap(c, p, num_experts=16, width=512):
    return AverageMixture([ParametricGAP(c, width) for _ in range(_n(num_experts))])


def _ave_sop(c, p, num_experts=16, dims=None, sop_dim=128):
    return AverageMixture([_psrsop(c, p, dims, sop_dim) for _ in range(_n(num_experts))])


def _gm_gap(c, p, num_experts=16, k=8, width=512, sop_dim=128):
    gate = _gate(c, p, _n(num_experts), k, second_order=False, out=sop_dim)
    return GatedMixture([ParametricGAP(c, width) for _ in range(num_experts)], gate, p.alpha, p.alpha_per_batch)


def _gm_sop(c, p, num_experts=16, k=8, dims=None, sop_dim=128):
    gate = _gate(c, p, _n(num_experts), k, second_order=True, out=sop_dim)
    return GatedMixture([_psrsop(c, p, dims, sop_dim) for _ in range(num_experts)], gate, p.alpha, p.alpha_per_batch)


def _sg_moe(c, p, num_experts=16, k=8, width=512, sop_dim=128):
    gate = _gate(c, p, _n(num_experts), k, second_order=False, out=sop_dim)
    return GatedMixture([LinearExpert(c, width) for _ in range(num_experts)], gate, p.alpha, p.alpha_per_batch)


def _netvlad(c, p, clusters=64):
    return NetVLAD(c, clusters)


def _n(num_experts) -> int:
    if int(num_experts) < 1:
        raise ValueError(f"number of components N must be >= 1, got {num_experts!r}")
    return int(num_experts)


#: family name -> factory(in_channels, protocol, **kwargs)
HEADS: dict[str, Callable[..., nn.Module]] = {
    "gap": _gap,
    "pgap": _pgap,
    "srsop": _srsop,
    "psrsop": _psrsop,
    "ave_gap": _ave_gap,
    "ave_sop": _ave_sop,
    "gm_gap": _gm_gap,
    "gm_sop": _gm_sop,
    "sg_moe": _sg_moe,
    "netvlad": _netvlad,
}


def register_head(name: str, head: Callable[..., nn.Module], *, overwrite: bool = False) -> Callable[..., nn.Module]:
    """Make ``head`` (an nn.Module class or factory) available as head family ``name``.

    ``head(in_channels, [protocol=...], **kwargs)`` must return a module with
    ``out_features``; it may set ``second_order`` / ``mixture`` and return ``(y, GateStats)``.
    Refuses to replace an existing name unless ``overwrite``.
    """
    if not callable(head):
        raise TypeError(f"head {name!r} must be a class or callable, got {head!r}")
    if name in HEADS and not overwrite and HEADS[name] is not head:
        raise ValueError(f"head {name!r} is already registered; pass overwrite=True to replace it")
    HEADS[name] = head
    return head


def get_head(name: str) -> Callable[..., nn.Module]:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; valid: {', '.join(HEADS)}")
    return HEADS[name]


def head_kwargs(name: str) -> list[str]:
    """Keyword arguments a head family accepts (besides in_channels and protocol)."""
    params = inspect.signature(get_head(name)).parameters
    return [k for k in params if k not in ("c", "p", "in_channels", "protocol", "self")]


def create_head(name: str, in_channels: int, protocol: Protocol, **kwargs) -> nn.Module:
    """Instantiate head family ``name`` on ``in_channels``; unknown kwargs raise ValueError."""
    factory = get_head(name)
    valid = head_kwargs(name)
    accepts_var_kw = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    bad = sorted(set(kwargs) - set(valid))
    if bad and not accepts_var_kw:
        raise ValueError(f"head {name!r} does not take {bad}; valid options: {valid or 'none'}")
    if factory in _BUILTIN:
        return factory(in_channels, protocol, **kwargs)
    if "protocol" in inspect.signature(factory).parameters:
        kwargs["protocol"] = protocol
    head = factory(in_channels, **kwargs)
    if not hasattr(head, "out_features"):
        raise TypeError(f"head {name!r} ({type(head).__name__}) must define out_features")
    return head


_BUILTIN = frozenset(HEADS.values())
