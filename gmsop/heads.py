"""Head families by name: ``create_head("gm_sop", in_channels=128, protocol=OFFICIAL, num_experts=16, k=8)``.

A head maps the backbone map (B, C, H, W) to (B, out_features); mixtures return
``(representation, GateStats)``. Built-in families and their options [defaults]:
    gap        -                                    GAP, C-d
    pgap       width [512], conv_bn [False]         1x1 conv [-> BN] -> ReLU -> GAP ("ResNet-18-Xd")
    srsop      -                                    iSQRT-COV, C(C+1)/2-d
    psrsop     dims [(2C, sop_dim)]                 parametric SR-SOP (J convs, Eq. 6)
    ave_gap    num_experts [16], width [512]        Ave-N of parametric GAPs
    ave_sop    num_experts [16], dims, sop_dim      Ave-N of parametric SR-SOPs
    gm_gap     num_experts [16], k [8], width       GM-GAP-N-K
    gm_sop     num_experts [16], k [8], dims        GM-SOP-N-K
    sg_moe     num_experts [16], k [8], width [512] One-layer SG-MoE (linear experts on GAP)
    netvlad    clusters [64]                        NetVLAD, K*C-d
``sop_dim`` [128] is the width entering every second-order pooling and the gate trunk's output;
``gate_dims`` [(2C, sop_dim)] the gate's 1x1 conv + BN + ReLU widths (gm_gap, gm_sop, sg_moe).
Each family declares its ``HeadTraits``, so the registry plans a variant without building it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

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
    XdHead,
    gating_trunk,
)
from gmsop.protocol import Protocol

#: The released code's schedule families (its lr x epochs: gmsop.engine.config.DEFAULT_SCHEDULES):
#: first-order heads train on GAP's, second-order heads and NetVLAD on SR-SOP's, GM-SOP on its own.
SCHEDULE_FAMILIES: tuple[str, ...] = ("gap", "srsop", "gm_sop")


@dataclass(frozen=True)
class HeadTraits:
    """What a head family is, known before it is built: ``second_order`` sets the backbone's last
    stride, ``mixture`` the classifier (BN + dropout), ``gated`` whether a balance loss applies,
    ``schedule_family`` the default learning-rate schedule."""

    second_order: bool = False
    mixture: bool = False
    gated: bool = False
    schedule_family: str = "gap"

    def __post_init__(self):
        if self.schedule_family not in SCHEDULE_FAMILIES:
            raise ValueError(
                f"unknown schedule family {self.schedule_family!r}; valid: {', '.join(SCHEDULE_FAMILIES)}"
            )


def _n(num_experts) -> int:
    if int(num_experts) < 1:
        raise ValueError(f"number of components N must be >= 1, got {num_experts!r}")
    return int(num_experts)


def _psrsop(c: int, p: Protocol, dims=None, sop_dim=128) -> ParametricSRSOP:
    dims = dims if dims is not None else (2 * c, int(sop_dim))
    return ParametricSRSOP(
        c, dims, batchnorm=p.cm_batchnorm, iterations=p.ns_iterations, bn_momentum=p.bn_momentum
    )


def _pgap(c, p, width=512, conv_bn=False):
    return XdHead(c, width, conv_bn=bool(conv_bn), bn_momentum=p.bn_momentum)


def _ave_gap(c, p, num_experts=16, width=512):
    return AverageMixture([ParametricGAP(c, width) for _ in range(_n(num_experts))])


def _ave_sop(c, p, num_experts=16, dims=None, sop_dim=128):
    return AverageMixture([_psrsop(c, p, dims, sop_dim) for _ in range(_n(num_experts))])


def _gated(c: int, p: Protocol, n, k, second_order: bool, out, dims, component) -> GatedMixture:
    """N ``component()``s behind a gate: trunk widths ``dims`` (None: 2C, ``out``), then SR-SOP or GAP."""
    n, widths = _n(n), ([2 * c, int(out)] if dims is None else [int(w) for w in dims])
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"gate_dims must be a non-empty list of positive widths, got {dims!r}")
    pool = SRSOP(widths[-1], p.ns_iterations) if second_order else GAP(widths[-1])
    trunk = gating_trunk(c, pool, widths, p.bn_momentum)
    gate = NoisyTopKGate(trunk, pool.out_features, n, k, noise=p.gate_noise)
    return GatedMixture([component() for _ in range(n)], gate, p.alpha, p.alpha_per_batch)


def _gm_gap(c, p, num_experts=16, k=8, width=512, sop_dim=128, gate_dims=None):
    return _gated(c, p, num_experts, k, False, sop_dim, gate_dims, lambda: ParametricGAP(c, width))


def _gm_sop(c, p, num_experts=16, k=8, dims=None, sop_dim=128, gate_dims=None):
    return _gated(c, p, num_experts, k, True, sop_dim, gate_dims, lambda: _psrsop(c, p, dims, sop_dim))


def _sg_moe(c, p, num_experts=16, k=8, width=512, sop_dim=128, gate_dims=None):
    return _gated(c, p, num_experts, k, False, sop_dim, gate_dims, lambda: LinearExpert(c, width))


_SECOND = HeadTraits(second_order=True, schedule_family="srsop")
#: family name -> (the factory the traits were declared for, its traits): a family replaced behind
#: register_head's back (HEADS[name] = ...) is not described by stale traits.
_TRAITS: dict[str, tuple[Callable[..., nn.Module], HeadTraits]] = {
    "gap": (lambda c, p: GAP(c), HeadTraits()),
    "pgap": (_pgap, HeadTraits(mixture=True)),  # the paper's single-CM GM-GAP (Sec. 3.1, note 2)
    "srsop": (lambda c, p: SRSOP(c, p.ns_iterations), _SECOND),
    "psrsop": (_psrsop, _SECOND),
    "ave_gap": (_ave_gap, HeadTraits(mixture=True)),
    "ave_sop": (_ave_sop, HeadTraits(second_order=True, mixture=True, schedule_family="srsop")),
    "gm_gap": (_gm_gap, HeadTraits(mixture=True, gated=True)),
    "gm_sop": (_gm_sop, HeadTraits(second_order=True, mixture=True, gated=True, schedule_family="gm_sop")),
    "sg_moe": (_sg_moe, HeadTraits(mixture=True, gated=True)),
    # first-order, trained on SR-SOP's schedule
    "netvlad": (lambda c, p, clusters=64: NetVLAD(c, clusters), HeadTraits(schedule_family="srsop")),
}
#: family name -> factory(in_channels, protocol, **kwargs)
HEADS: dict[str, Callable[..., nn.Module]] = {name: factory for name, (factory, _) in _TRAITS.items()}


def _traits_of(head: Callable[..., nn.Module], **given) -> HeadTraits:
    """Traits from ``given`` (register_head's arguments), else the head class's plain attributes (not
    properties); the schedule family defaults to "srsop" for a second-order head and "gap" otherwise."""

    def found(attr: str, kind: type):
        static = inspect.getattr_static(head, attr, None)
        return given[attr] if given.get(attr) is not None else static if isinstance(static, kind) else None

    flags = {attr: bool(found(attr, int)) for attr in ("second_order", "mixture", "gated")}
    family = found("schedule_family", str)
    if family is None:
        family = "srsop" if flags["second_order"] else "gap"
    return HeadTraits(**flags, schedule_family=family)


def register_head(
    name: str,
    head: Callable[..., nn.Module],
    *,
    overwrite: bool = False,
    second_order: bool | None = None,
    mixture: bool | None = None,
    gated: bool | None = None,
    schedule_family: str | None = None,
) -> Callable[..., nn.Module]:
    """Make ``head`` (an nn.Module class or factory) available as head family ``name``.

    ``head(in_channels, [protocol=...], **kwargs)`` must return a module with ``out_features``;
    it may return ``(y, GateStats)``. Its traits (``HeadTraits``' fields) are read from the class
    attributes or given here; ``build_model`` refuses a built head that contradicts them.
    """
    if not callable(head):
        raise TypeError(f"head {name!r} must be a class or callable, got {head!r}")
    if name in HEADS and not overwrite and HEADS[name] is not head:
        raise ValueError(f"head {name!r} is already registered; pass overwrite=True to replace it")
    traits = _traits_of(
        head, second_order=second_order, mixture=mixture, gated=gated, schedule_family=schedule_family
    )
    HEADS[name] = head
    _TRAITS[name] = (head, traits)
    return head


def get_head(name: str) -> Callable[..., nn.Module]:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; valid: {', '.join(HEADS)}")
    return HEADS[name]


def head_traits(name: str) -> HeadTraits:
    """The declared traits of head family ``name`` (ValueError if unknown); see ``HeadTraits``."""
    factory = get_head(name)
    declared = _TRAITS.get(name)
    return declared[1] if declared is not None and declared[0] is factory else _traits_of(factory)


def head_kwargs(name: str) -> list[str]:
    """Keyword arguments a head family accepts (besides in_channels and protocol)."""
    params = inspect.signature(get_head(name)).parameters
    return [k for k in params if k not in ("c", "p", "in_channels", "protocol", "self")]


def create_head(name: str, in_channels: int, protocol: Protocol, **kwargs) -> nn.Module:
    """Instantiate head family ``name`` on ``in_channels``; unknown kwargs raise ValueError."""
    factory, valid = get_head(name), head_kwargs(name)
    params = inspect.signature(factory).parameters
    bad = sorted(set(kwargs) - set(valid))
    if bad and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ValueError(f"head {name!r} does not take {bad}; valid options: {valid or 'none'}")
    if factory in _BUILTIN:
        return factory(in_channels, protocol, **kwargs)
    if "protocol" in params:
        kwargs["protocol"] = protocol
    head = factory(in_channels, **kwargs)
    if not hasattr(head, "out_features"):
        raise TypeError(f"head {name!r} ({type(head).__name__}) must define out_features")
    return head


_BUILTIN = frozenset(HEADS.values())
