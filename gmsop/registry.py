"""Variants by the paper's names: ``build_model("GM-SOP-16-8", backbone="resnet18")``.

A variant name parses into a head family plus its arguments (N, K, X from the name):
    ResNet-18 / ResNet-50 / WRN-36-2 / GAP      gap       (the name may imply the backbone)
    ResNet-18-512d, ResNet-50-8256d, GAP-512d   pgap      width X
    SR-SOP, Parametric SR-SOP                   srsop, psrsop
    Ave-GAP-N, Ave-SOP-N                        ave_gap / ave_sop, N
    GM-GAP-N-K, GM-SOP-N-K                      gm_gap / gm_sop, N and K
    NetVLAD[-C]                                 netvlad, C clusters (64)
    SG-MoE[-N-K]                                sg_moe, N and K (16, 8)
``register_variant`` adds a fixed name. Overrides go to the protocol when they name a protocol
switch (``ns_iterations=5``), otherwise to the head (``dims=[256, 64]``). ``resolve_variant``
answers everything about a variant without building it; ``build_model`` builds exactly that.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

from gmsop.backbones import (
    BACKBONES,
    backbone_widths,
    create_backbone,
    list_backbones,
    paper_name,
    resolve_backbone,
    scaled,
)
from gmsop.functional import triu_dim
from gmsop.heads import HEADS, HeadTraits, create_head, get_head, head_kwargs, head_traits
from gmsop.model import GMSOPNet
from gmsop.paper_values import paper_params
from gmsop.protocol import Protocol, get_protocol, protocol_fields


@dataclass(frozen=True)
class Variant:
    name: str  # canonical display name, e.g. "GM-SOP-16-8"
    head: str  # head family in gmsop.heads.HEADS
    kwargs: dict = field(default_factory=dict)  # head arguments fixed by the name
    backbone: str | None = None  # backbone implied by the name (e.g. "ResNet-50-512d")
    schedule_family: str | None = None  # set by register_variant; None: the head family's


#: Every method row of Tables 2-4 (backbone-independent names); see ``list_variants``.
PAPER_VARIANTS = ["ResNet-18", "ResNet-18-512d", "Ave-GAP-16", "GM-GAP-16-8", "ResNet-18-8256d", "SR-SOP"]
PAPER_VARIANTS += ["Ave-SOP-16", "Parametric SR-SOP", "GM-SOP-16-8", "NetVLAD", "SG-MoE"]

_CUSTOM: dict[str, Variant] = {}

#: The width entering every second-order pooling at full width (heads' ``sop_dim``): SR-SOP is 8256-d.
SOP_DIM = 128

#: The override ``classifier``: BN1d + dropout before the linear map (the mixtures') or the linear
#: map alone (the released baselines'); unset: the head family's trait.
CLASSIFIERS = {"bn_dropout": True, "linear": False}

#: The backbones' paper names ("ResNet-18", "ResNet-50", "WRN-36-2"), as a variant name may start with them.
_BACKBONE_IN_NAME = "(" + "|".join(re.escape(spec["paper_name"]) for spec in BACKBONES.values()) + ")"


def _numbered(name: str, head: str, numbers, keys=("num_experts", "k")) -> Variant:
    """``name-N[-K]`` with the numbers the pattern matched (None: absent) as head options ``keys``."""
    values = [int(v) for v in numbers if v]
    return Variant("-".join([name, *map(str, values)]), head, dict(zip(keys, values)))


_PATTERNS: list[tuple[str, callable]] = [
    (rf"^{_BACKBONE_IN_NAME}$", lambda m: Variant(m[1], "gap", {}, resolve_backbone(m[1]))),
    (r"^GAP$", lambda m: Variant("GAP", "gap")),
    (
        rf"^{_BACKBONE_IN_NAME}-(\d+)d$",
        lambda m: Variant(f"{m[1]}-{int(m[2])}d", "pgap", {"width": int(m[2])}, resolve_backbone(m[1])),
    ),
    (r"^GAP-(\d+)d$", lambda m: Variant(f"GAP-{int(m[1])}d", "pgap", {"width": int(m[1])})),
    (r"^SR-SOP$", lambda m: Variant("SR-SOP", "srsop")),
    (r"^Parametric[ _-]?SR-SOP$", lambda m: Variant("Parametric SR-SOP", "psrsop")),
    (r"^Ave-(GAP|SOP)-(\d+)$", lambda m: _numbered(f"Ave-{m[1].upper()}", f"ave_{m[1].lower()}", m[2:])),
    (r"^GM-(GAP|SOP)-(\d+)-(\d+)$", lambda m: _numbered(f"GM-{m[1].upper()}", f"gm_{m[1].lower()}", m[2:])),
    (r"^NetVLAD(?:-(\d+))?$", lambda m: _numbered("NetVLAD", "netvlad", m[1:], ("clusters",))),
    (r"^SG-MoE(?:-(\d+)-(\d+))?$", lambda m: _numbered("SG-MoE", "sg_moe", m[1:])),
]


def register_variant(
    name: str, head: str, *, overwrite: bool = False, schedule_family: str | None = None, **kwargs
) -> Variant:
    """Register a fixed variant name for head family ``head`` with preset ``kwargs``;
    ``schedule_family`` overrides the head family's default schedule."""
    if head not in HEADS:
        raise ValueError(
            f"unknown head {head!r} for variant {name!r}; valid: {', '.join(HEADS)} (register_head first)"
        )
    if name in _CUSTOM and not overwrite:
        raise ValueError(f"variant {name!r} is already registered; pass overwrite=True to replace it")
    bad = sorted(set(kwargs) - set(head_kwargs(head)))
    if bad:
        raise ValueError(f"head {head!r} does not take {bad}; valid options: {head_kwargs(head) or 'none'}")
    if schedule_family is not None:
        HeadTraits(schedule_family=schedule_family)  # refuses an unknown family
    _CUSTOM[name] = Variant(name, head, dict(kwargs), schedule_family=schedule_family)
    return _CUSTOM[name]


def list_variants() -> list[str]:
    """The paper's variant names followed by every registered one."""
    return PAPER_VARIANTS + [n for n in _CUSTOM if n not in PAPER_VARIANTS]


def parse_variant(name: str) -> Variant:
    """Parse a variant name; ValueError naming the value and listing valid names otherwise."""
    text = str(name).strip()
    if text in _CUSTOM:
        return _CUSTOM[text]
    for pattern, make in _PATTERNS:
        if m := re.match(pattern, text, flags=re.IGNORECASE):
            return make(_canon(m))
    raise ValueError(
        f"unknown variant {name!r}; valid: {', '.join(list_variants())} "
        "(N, K and X may vary: GM-SOP-32-4, Ave-GAP-8, ResNet-18-1024d, NetVLAD-32, SG-MoE-8-2)"
    )


def _canon(m: re.Match) -> list:
    """Match groups with backbone spellings normalised (case-insensitive input)."""
    groups = [m[0]] + list(m.groups())
    fixes = {spec["paper_name"].lower(): spec["paper_name"] for spec in BACKBONES.values()}
    return [fixes.get(g.lower(), g) if isinstance(g, str) else g for g in groups]


def _scale_head_kwargs(head: str, kwargs: dict, width_mult: float) -> dict:
    """Scale the head's width-like defaults (and widths fixed by the name) by ``width_mult``."""
    valid = head_kwargs(head)
    out = dict(kwargs)
    if "width" in valid:
        width = int(kwargs.get("width", 512))
        if head == "pgap" and width == triu_dim(SOP_DIM):
            # "ResNet-18-8256d" is SR-SOP's dimension by definition (the paper pairs the two "with
            # the same dimensional representation"), so it follows SR-SOP's d(d+1)/2 at any width.
            out["width"] = triu_dim(scaled(SOP_DIM, width_mult))
        else:
            out["width"] = scaled(width, width_mult)
    if "sop_dim" in valid:
        out["sop_dim"] = scaled(int(kwargs.get("sop_dim", SOP_DIM)), width_mult)
    for key in ("dims", "gate_dims"):
        if key in valid and kwargs.get(key) is not None:
            out[key] = [scaled(int(w), width_mult) for w in kwargs[key]]
    return out


def head_default(head: str, option: str):
    """The default of ``option`` in head family ``head``'s signature (None if it has none)."""
    param = inspect.signature(get_head(head)).parameters.get(option)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


@dataclass(frozen=True)
class ResolvedVariant:
    """A variant resolved on a backbone under a protocol: everything ``build_model`` builds from."""

    display_name: str  # the name on the chosen backbone ("ResNet-50-512d" for ResNet-18-512d on resnet50)
    variant: Variant  # the parsed name (its preset head options and implied backbone)
    head: str  # head family in gmsop.heads.HEADS
    head_kwargs: dict  # the head's arguments: the name's, then head overrides, width-scaled
    backbone: str  # canonical backbone key ("resnet18", "resnet50", "wrn36_2")
    backbone_name: str  # the paper's spelling of the backbone ("ResNet-18")
    in_channels: int  # channels of the backbone map entering the head
    width_mult: float
    protocol: Protocol  # the named protocol with the protocol-switch overrides applied
    second_order: bool  # declared by the head family (gmsop.heads.HeadTraits)
    mixture: bool  # declared by the head family: a mixture (or the single-CM Xd head)
    classifier: str  # "bn_dropout" (BN1d + dropout before the linear map) or "linear"
    gated: bool  # a balance loss applies (GM-N-K, SG-MoE)
    last_stride: int  # stage-5 stride: protocol.sop_stage5_stride for second-order heads, else 2
    num_experts: int | None  # N, for heads that take it (name, override or the head's default)
    k: int | None  # K, for heads that take it
    alpha: float | None  # the protocol's balance weight for gated heads, None otherwise
    schedule_family: str  # "gap", "srsop" or "gm_sop": the key of the released default schedule
    dropout: float  # classifier dropout (0.0 for non-mixtures)
    # (name, backbone) of the published row this is, None for a scaled net or a changed head
    _paper_row: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def paper_params(self) -> tuple[float, str] | None:
        """The published parameter count (millions) and its source; None for a scaled net or changed head."""
        return paper_params(*self._paper_row) if self._paper_row is not None else None

    def info(self) -> dict:
        """The ``GMSOPNet.info`` record of a model built from this resolution (before its dims)."""
        info = {"variant": self.display_name, "head": self.head, "head_kwargs": dict(self.head_kwargs)}
        info |= {"backbone": self.backbone, "protocol": self.protocol.name}
        info["protocol_switches"] = {f: getattr(self.protocol, f) for f in protocol_fields()}
        keys = "last_stride width_mult dropout second_order mixture classifier num_experts k schedule_family"
        return info | {key: getattr(self, key) for key in keys.split()}


def resolve_variant(
    name: str,
    backbone: str | None = None,
    protocol: str | Protocol = "official",
    overrides: dict | None = None,
    width_mult: float = 1.0,
    *,
    dropout: float | None = None,
) -> ResolvedVariant:
    """Resolve variant ``name`` on ``backbone`` under ``protocol``, building nothing.

    ``overrides`` set protocol switches or head arguments (None values ignored). ``dropout``
    applies to mixtures (default 0.2; 0.4 for GM-SOP on WRN-36-2, released code). ``width_mult``
    scales the head's widths as the backbone's. ValueError for anything ``build_model`` refuses.
    """
    variant = parse_variant(name)
    if backbone is None:
        backbone = variant.backbone or "resnet18"
    try:
        backbone = resolve_backbone(backbone)
    except ValueError:
        valid = ", ".join(list_backbones())
        raise ValueError(
            f"unknown backbone {backbone!r} for variant {variant.name!r}; valid: {valid}"
        ) from None
    display = variant.name
    if variant.backbone and variant.backbone != backbone:  # an explicit backbone wins: "ResNet-50-512d"
        display = variant.name.replace(paper_name(variant.backbone), paper_name(backbone), 1)

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    classifier = overrides.pop("classifier", None)
    if classifier is not None and classifier not in CLASSIFIERS:
        raise ValueError(
            f"variant {display!r}: unknown classifier {classifier!r}; valid: {', '.join(CLASSIFIERS)}"
        )
    proto_over = {k: v for k, v in overrides.items() if k in protocol_fields()}
    head_over = {k: v for k, v in overrides.items() if k not in proto_over}
    valid_head = head_kwargs(variant.head)
    bad = sorted(k for k in head_over if k not in valid_head)
    if bad:
        raise ValueError(
            f"unknown option(s) {bad} for variant {display!r}; head options: {valid_head or 'none'}; "
            f"protocol switches: {protocol_fields()}"
        )
    proto = get_protocol(protocol, **proto_over)
    kwargs = {**variant.kwargs, **head_over}
    n, k = kwargs.get("num_experts"), kwargs.get("k")
    if n is not None and int(n) < 1:
        raise ValueError(f"variant {display!r}: number of components N must be >= 1, got N={n}")
    n = 16 if n is None else n
    if k is not None and not 1 <= int(k) <= int(n):
        raise ValueError(f"variant {display!r}: K must satisfy 1 <= K <= N, got N={n}, K={k}")
    if not width_mult > 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult!r}")
    if width_mult != 1.0:
        kwargs = _scale_head_kwargs(variant.head, kwargs, width_mult)
    in_channels = backbone_widths(backbone, width_mult)[-1]
    gm_gap_wrn = backbone == "wrn36_2" and variant.head == "gm_gap" and "gate_dims" in valid_head
    if gm_gap_wrn and kwargs.get("gate_dims") is None:
        # the released gate there: ONE 1x1 conv 256 -> 512 + BN + ReLU, then GAP (cnn_init_WRN_GM.m)
        kwargs["gate_dims"] = [2 * in_channels]

    traits = head_traits(variant.head)
    n, k = (
        kwargs.get(o, head_default(variant.head, o)) if o in valid_head else None
        for o in ("num_experts", "k")
    )
    if dropout is None:
        dropout = 0.4 if (backbone == "wrn36_2" and variant.head == "gm_sop") else 0.2
    bn_dropout = traits.mixture if classifier is None else CLASSIFIERS[classifier]
    paper_row = (display, backbone) if width_mult == 1.0 and not head_over else None
    return ResolvedVariant(
        display_name=display,
        variant=variant,
        head=variant.head,
        head_kwargs=kwargs,
        backbone=backbone,
        backbone_name=paper_name(backbone),
        in_channels=in_channels,
        width_mult=width_mult,
        protocol=proto,
        second_order=traits.second_order,
        mixture=traits.mixture,
        classifier="bn_dropout" if bn_dropout else "linear",
        gated=traits.gated,
        last_stride=proto.sop_stage5_stride if traits.second_order else 2,
        num_experts=None if n is None else int(n),
        k=None if k is None else int(k),
        alpha=proto.alpha if traits.gated else None,
        schedule_family=variant.schedule_family or traits.schedule_family,
        dropout=dropout if bn_dropout else 0.0,
        _paper_row=paper_row,
    )


def build_model(
    name: str,
    backbone: str | None = None,
    num_classes: int = 1000,
    protocol: str | Protocol = "official",
    dropout: float | None = None,
    width_mult: float = 1.0,
    **overrides,
) -> GMSOPNet:
    """Build variant ``name`` on ``backbone`` for ``num_classes`` classes under ``protocol``, as
    ``resolve_variant`` (same arguments, same errors) resolves it."""
    r = resolve_variant(name, backbone, protocol, overrides, width_mult, dropout=dropout)
    # The head is built before the backbone: the order of parameter initialisation under a seed.
    head = create_head(r.head, r.in_channels, r.protocol, **r.head_kwargs)
    for flag in ("second_order", "mixture"):
        built = bool(getattr(head, flag, False))
        if built != getattr(r, flag):
            raise ValueError(
                f"head {r.head!r} built a module with {flag}={built}, "
                f"but the family declares {flag}={getattr(r, flag)} "
                f"(the registry plans with the declaration); set {flag} as a class attribute or pass "
                f"register_head({r.head!r}, ..., {flag}={built})"
            )
    trunk = create_backbone(
        r.backbone, last_stride=r.last_stride, bn_momentum=r.protocol.bn_momentum, width_mult=r.width_mult
    )
    model = GMSOPNet(
        trunk,
        head,
        num_classes,
        dropout=r.dropout,
        bn_momentum=r.protocol.bn_momentum,
        info=r.info(),
        classifier_bn=r.classifier == "bn_dropout",
    )
    model.protocol = r.protocol
    return model
