"""Variants by the paper's names: ``build_model("GM-SOP-16-8", backbone="resnet18")``.

A variant name parses into a head family plus its arguments (N, K, X from the name):

    ResNet-18 / ResNet-50 / WRN-36-2 / GAP      gap       (the name may imply the backbone)
    ResNet-18-512d, ResNet-50-8256d, GAP-512d   pgap      width X
    SR-SOP                                      srsop
    Parametric SR-SOP                           psrsop
    Ave-GAP-N, Ave-SOP-N                        ave_gap / ave_sop, N
    GM-GAP-N-K, GM-SOP-N-K                      gm_gap / gm_sop, N and K
    NetVLAD[-C]                                 netvlad, C clusters (64)
    SG-MoE[-N-K]                                sg_moe, N and K (16, 8)

``register_variant(name, head, **kwargs)`` adds a fixed name (e.g. a head registered from
outside the package with ``register_head``); ``list_variants()`` lists the paper's variants
and every registered one. Overrides in ``build_model`` go to the protocol when they name a
protocol switch (``ns_iterations=5``, ``alpha=0``), otherwise to the head (``dims=[256, 64]``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from gmsop.backbones import BACKBONES, backbone_widths, create_backbone, list_backbones, resolve_backbone, scaled
from gmsop.heads import HEADS, create_head, head_kwargs
from gmsop.model import GMSOPNet
from gmsop.protocol import Protocol, get_protocol, protocol_fields

__all__ = ["Variant", "PAPER_VARIANTS", "build_model", "list_variants", "parse_variant", "register_variant"]


@dataclass(frozen=True)
class Variant:
    name: str  # canonical display name, e.g. "GM-SOP-16-8"
    head: str  # head family in gmsop.heads.HEADS
    kwargs: dict = field(default_factory=dict)  # head arguments fixed by the name
    backbone: str | None = None  # backbone implied by the name (e.g. "ResNet-50-512d")


#: Every method row of Tables 2-4 (backbone-independent names); see ``list_variants``.
PAPER_VARIANTS = [
    "ResNet-18", "ResNet-18-512d", "Ave-GAP-16", "GM-GAP-16-8", "ResNet-18-8256d", "SR-SOP",
    "Ave-SOP-16", "Parametric SR-SOP", "GM-SOP-16-8", "NetVLAD", "SG-MoE",
]

_CUSTOM: dict[str, Variant] = {}

_BACKBONE_IN_NAME = r"(ResNet-18|ResNet-50|WRN-36-2)"
_PATTERNS: list[tuple[str, callable]] = [
    (rf"^{_BACKBONE_IN_NAME}$", lambda m: Variant(m[1], "gap", {}, resolve_backbone(m[1]))),
    (r"^GAP$", lambda m: Variant("GAP", "gap")),
    (rf"^{_BACKBONE_IN_NAME}-(\d+)d$", lambda m: Variant(f"{m[1]}-{int(m[2])}d", "pgap", {"width": int(m[2])}, resolve_backbone(m[1]))),
    (r"^GAP-(\d+)d$", lambda m: Variant(f"GAP-{int(m[1])}d", "pgap", {"width": int(m[1])})),
    (r"^SR-SOP$", lambda m: Variant("SR-SOP", "srsop")),
    (r"^Parametric[ _-]?SR-SOP$", lambda m: Variant("Parametric SR-SOP", "psrsop")),
    (r"^Ave-(GAP|SOP)-(\d+)$", lambda m: Variant(f"Ave-{m[1].upper()}-{int(m[2])}", f"ave_{m[1].lower()}", {"num_experts": int(m[2])})),
    (r"^GM-(GAP|SOP)-(\d+)-(\d+)$", lambda m: Variant(f"GM-{m[1].upper()}-{int(m[2])}-{int(m[3])}", f"gm_{m[1].lower()}", {"num_experts": int(m[2]), "k": int(m[3])})),
    (r"^NetVLAD(?:-(\d+))?$", lambda m: Variant(f"NetVLAD-{int(m[1])}" if m[1] else "NetVLAD", "netvlad", {"clusters": int(m[1])} if m[1] else {})),
    (r"^SG-MoE(?:-(\d+)-(\d+))?$", lambda m: Variant(f"SG-MoE-{int(m[1])}-{int(m[2])}" if m[1] else "SG-MoE", "sg_moe", {"num_experts": int(m[1]), "k": int(m[2])} if m[1] else {})),
]


def register_variant(name: str, head: str, *, overwrite: bool = False, **kwargs) -> Variant:
    """Register a fixed variant name for head family ``head`` with preset ``kwargs``."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r} for variant {name!r}; valid: {', '.join(HEADS)} (register_head first)")
    if name in _CUSTOM and not overwrite:
        raise ValueError(f"variant {name!r} is already registered; pass overwrite=True to replace it")
    bad = sorted(set(kwargs) - set(head_kwargs(head)))
    if bad:
        raise ValueError(f"head {head!r} does not take {bad}; valid options: {head_kwargs(head) or 'none'}")
    _CUSTOM[name] = Variant(name, head, dict(kwargs))
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
        m = re.match(pattern, text, flags=re.IGNORECASE)
        if m:
            return make(_canon(m))
    raise ValueError(
        f"unknown variant {name!r}; valid: {', '.join(list_variants())} "
        "(N, K and X may vary: GM-SOP-32-4, Ave-GAP-8, ResNet-18-1024d, NetVLAD-32, SG-MoE-8-2)"
    )


def _canon(m: re.Match) -> list:
    """Match groups with backbone spellings normalised (case-insensitive input)."""
    groups = [m[0]] + list(m.groups())
    fixes = {"resnet-18": "ResNet-18", "resnet-50": "ResNet-50", "wrn-36-2": "WRN-36-2"}
    return [fixes.get(g.lower(), g) if isinstance(g, str) else g for g in groups]


def _check_nk(variant: Variant, kwargs: dict) -> None:
    n, k = kwargs.get("num_experts"), kwargs.get("k")
    if n is not None and int(n) < 1:
        raise ValueError(f"variant {variant.name!r}: number of components N must be >= 1, got N={n}")
    if k is not None and not 1 <= int(k) <= int(n if n is not None else 16):
        raise ValueError(f"variant {variant.name!r}: K must satisfy 1 <= K <= N, got N={n if n is not None else 16}, K={k}")


def _scale_head_kwargs(head: str, kwargs: dict, width_mult: float) -> dict:
    """Scale the head's width-like defaults (and widths fixed by the name) by ``width_mult``."""
    valid = head_kwargs(head)
    out = dict(kwargs)
    if "width" in valid:
        out["width"] = scaled(int(kwargs.get("width", 512)), width_mult)
    if "sop_dim" in valid:
        out["sop_dim"] = scaled(int(kwargs.get("sop_dim", 128)), width_mult)
    if "dims" in valid and kwargs.get("dims") is not None:
        out["dims"] = [scaled(int(w), width_mult) for w in kwargs["dims"]]
    return out


def build_model(
    name: str,
    backbone: str | None = None,
    num_classes: int = 1000,
    protocol: str | Protocol = "official",
    dropout: float | None = None,
    width_mult: float = 1.0,
    **overrides,
) -> GMSOPNet:
    """Build variant ``name`` on ``backbone`` for ``num_classes`` classes under ``protocol``.

    ``overrides`` set protocol switches (see gmsop.protocol) or head arguments (see
    gmsop.heads); None values are ignored. ``dropout`` applies to mixtures only (default 0.2,
    0.4 for GM-SOP on WRN-36-2 as in the released code). ``width_mult`` scales the backbone
    and the head's widths (sop_dim 128, width 512, and widths from the name) for CPU-sized runs.
    """
    variant = parse_variant(name)
    if backbone is None:
        backbone = variant.backbone or "resnet18"
    try:
        backbone = resolve_backbone(backbone)
    except ValueError:
        raise ValueError(f"unknown backbone {backbone!r} for variant {variant.name!r}; valid: {', '.join(list_backbones())}") from None
    if variant.backbone and variant.backbone != backbone:
        # "ResNet-18-512d" names a head *and* a default backbone; an explicit backbone wins
        # and the display name follows it ("ResNet-50-512d"), so paper names work on any trunk.
        old, new = BACKBONES[variant.backbone]["paper_name"], BACKBONES[backbone]["paper_name"]
        variant = Variant(variant.name.replace(old, new, 1), variant.head, variant.kwargs, backbone)

    overrides = {k: v for k, v in overrides.items() if v is not None}
    proto_over = {k: v for k, v in overrides.items() if k in protocol_fields()}
    head_over = {k: v for k, v in overrides.items() if k not in proto_over}
    valid_head = head_kwargs(variant.head)
    bad = sorted(k for k in head_over if k not in valid_head)
    if bad:
        raise ValueError(
            f"unknown option(s) {bad} for variant {variant.name!r}; head options: {valid_head or 'none'}; "
            f"protocol switches: {protocol_fields()}"
        )
    proto = get_protocol(protocol, **proto_over)
    kwargs = {**variant.kwargs, **head_over}
    _check_nk(variant, kwargs)

    # The head is built first (its width comes from the backbone's spec) because its
    # second-order flag decides the backbone's last stride.
    if not width_mult > 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult!r}")
    in_channels = backbone_widths(backbone, width_mult)[-1]
    if width_mult != 1.0:
        kwargs = _scale_head_kwargs(variant.head, kwargs, width_mult)
    head = create_head(variant.head, in_channels, proto, **kwargs)
    second_order = bool(getattr(head, "second_order", False))
    last_stride = proto.sop_stage5_stride if second_order else 2
    trunk = create_backbone(backbone, last_stride=last_stride, bn_momentum=proto.bn_momentum, width_mult=width_mult)
    if dropout is None:
        dropout = 0.4 if (backbone == "wrn36_2" and variant.head == "gm_sop") else 0.2
    info = {
        "variant": variant.name,
        "head": variant.head,
        "head_kwargs": kwargs,
        "backbone": backbone,
        "protocol": proto.name,
        "protocol_switches": {f: getattr(proto, f) for f in protocol_fields()},
        "last_stride": last_stride,
        "width_mult": width_mult,
        "dropout": dropout if getattr(head, "mixture", False) else 0.0,
    }
    model = GMSOPNet(trunk, head, num_classes, dropout=dropout, bn_momentum=proto.bn_momentum, info=info)
    model.protocol = proto
    return model
