"""Backbones by name: ``create_backbone("resnet18", last_stride=1, bn_momentum=0.3)``.

Each entry is data (blocks per stage, widths, stem width); there is one code path (ResNet).
"""

from __future__ import annotations

from gmsop.backbones.resnet import ResNet

#: name -> (blocks per stage, widths, stem width, paper name)
BACKBONES: dict[str, dict] = {
    "resnet18": dict(blocks=(2, 2, 2, 2), widths=(16, 32, 64, 128), stem_width=16, paper_name="ResNet-18"),
    "resnet50": dict(blocks=(6, 6, 6, 6), widths=(16, 32, 64, 128), stem_width=16, paper_name="ResNet-50"),
    "wrn36_2": dict(blocks=(4, 4, 4, 4), widths=(32, 64, 128, 256), stem_width=16, paper_name="WRN-36-2"),
}

#: Backbones the paper's Table 3 cites (rows copied from Chrabaszcz et al. 2017) but nothing
#: here builds: id -> paper name, so reports spell every backbone id from this one module.
CITED_BACKBONES: dict[str, str] = {"wrn36_1": "WRN-36-1", "wrn36_5": "WRN-36-5"}

_ALIASES = {spec["paper_name"].lower(): name for name, spec in BACKBONES.items()}


def paper_names() -> dict[str, str]:
    """Every backbone id the harness knows (built, then cited) -> the paper's spelling."""
    return {**{name: spec["paper_name"] for name, spec in BACKBONES.items()}, **CITED_BACKBONES}


def paper_name(backbone: str) -> str:
    """The paper's spelling of a backbone id ("resnet18" -> "ResNet-18"); unknown ids pass through."""
    return paper_names().get(backbone, backbone)


def list_backbones() -> list[str]:
    return list(BACKBONES)


def resolve_backbone(name: str) -> str:
    """Canonical backbone key for ``name`` (also accepts the paper's spelling, e.g. 'ResNet-18')."""
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    for canonical in BACKBONES:
        if key == canonical.replace("_", ""):
            return canonical
    if str(name).strip().lower() in _ALIASES:
        return _ALIASES[str(name).strip().lower()]
    raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")


def scaled(width: int, width_mult: float = 1.0) -> int:
    """``width * width_mult`` rounded, at least 1 (CPU-sized variants of the paper's nets)."""
    return max(1, int(round(width * width_mult)))


def backbone_widths(name: str, width_mult: float = 1.0) -> tuple[int, ...]:
    return tuple(scaled(w, width_mult) for w in BACKBONES[resolve_backbone(name)]["widths"])


def create_backbone(
    name: str, last_stride: int = 2, bn_momentum: float = 0.1, width_mult: float = 1.0
) -> ResNet:
    """Backbone ``name``; ``width_mult`` scales every width (1.0 = the paper's net)."""
    if not width_mult > 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult!r}")
    spec = BACKBONES[resolve_backbone(name)]
    return ResNet(
        spec["blocks"],
        backbone_widths(name, width_mult),
        scaled(spec["stem_width"], width_mult),
        last_stride=last_stride,
        bn_momentum=bn_momentum,
    )
