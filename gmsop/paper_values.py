"""The numbers the GM-SOP paper (Wang et al., NeurIPS 2018) publishes, as data, with their source.

A value is here only if the paper prints it (a table cell or a number in the text); where it
prints none, lookups return ``None``: a gap is never filled with an estimate. Keys are
``(table, variant, backbone, tag)``: the paper's method name, the harness's backbone id, and tag
"star" for Table 3's starred rows (flip-doubled training set). Errors in percent, parameters in
millions, speeds in training images/s on the authors' GTX 1080 (only ratios transfer).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Table ids with published numbers: "fig3" holds the numbers the text quotes on Figure 3;
#: "fig2_right" (a plot without numbers) has none.
TABLES: tuple[str, ...] = ("table2", "table3", "table4", "fig2_right", "fig3")

#: The dataset each table's numbers were measured on (a registered dataset name).
TABLE_DATASETS: dict[str, str] = {t: "places365" if t == "table4" else "imagenet64" for t in TABLES}

#: The paper's setting on each dataset, as a row's dataset options must read (defaults filled in):
#: its input size (Places365: 100x100, 96x96 crops) and the complete release (``require_full``).
PAPER_DATA_OPTIONS: dict[str, dict[str, object]] = {
    "imagenet64": {"size": 64, "require_full": True},
    "places365": {"size": 100, "crop": 96, "require_full": True},
}

#: Epochs the paper trains per (dataset, backbone, variant or schedule family), over the original
#: training set; where text and released code differ, the shorter. Sources:
#: shared/reference/method-facts.md and the paper's Sec. 3.
PAPER_EPOCHS: dict[tuple[str, str, str], int] = {
    ("imagenet64", "resnet18", "gap"): 75,  # released and text: {50,15,10}
    ("imagenet64", "resnet18", "srsop"): 40,  # text {20,5,5,5,5}; released {40,10,5,5}
    ("imagenet64", "resnet18", "gm_sop"): 60,  # released and text: {40,10,5,5}
    ("imagenet64", "resnet50", "gap"): 75,  # text: every ResNet-50 row {50,15,10}
    ("imagenet64", "resnet50", "srsop"): 75,
    ("imagenet64", "resnet50", "gm_sop"): 75,
    ("imagenet64", "wrn36_2", "gap"): 40,  # released cnn_init_WRN_GM.m: {20,10,10}
    ("imagenet64", "wrn36_2", "gm_sop"): 40,  # released: {20,10,5,5}
    ("places365", "resnet18", "gap"): 40,  # text: {25,5,5,5}
    ("places365", "resnet18", "srsop"): 40,
    ("places365", "resnet18", "gm_sop"): 40,
    ("places365", "resnet18", "ResNet-18-8256d"): 60,  # text: {35,10,10,5} for this row alone
}


def paper_epochs(dataset: str, backbone: str, variant: str, family: str | None) -> int | None:
    """The paper's schedule length for a row (the variant's entry, else its family's), or None."""
    return PAPER_EPOCHS.get((dataset, backbone, variant), PAPER_EPOCHS.get((dataset, backbone, family or "")))


#: How reports name each table id.
TABLE_NAMES = dict(zip(TABLES, ("Table 2", "Table 3", "Table 4", "Figure 2 (right)", "the text on Figure 3")))

#: Tag of Table 3's starred rows (flip-doubled training set, 4-px pad + random crop).
STAR = "star"


@dataclass(frozen=True)
class PaperValue:
    """One published row; ``None`` where the paper prints no number."""

    table: str
    variant: str
    backbone: str
    tag: str = ""
    dim: int | None = None
    params_m: float | None = None
    top1_err: float | None = None
    top5_err: float | None = None
    train_fps: float | None = None
    label: str = ""  # the row as the paper prints it
    source: str = ""  # where in the paper, or which reference it copies


def _t2(variant: str, dim: int, top1: float) -> PaperValue:
    label = f"{variant} (Ours)" if variant.startswith("GM-") else variant
    return PaperValue("table2", variant, "resnet18", dim=dim, top1_err=top1, label=label, source="Table 2")


def _t3(variant, backbone, params, dim, top1, top5, label, tag="", source="Table 3") -> PaperValue:
    return PaperValue("table3", variant, backbone, tag, dim, params, top1, top5, label=label, source=source)


def _t4(variant: str, dim: int, top1: float, top5: float) -> PaperValue:
    return PaperValue(
        "table4", variant, "resnet18", dim=dim, top1_err=top1, top5_err=top5, label=variant, source="Table 4"
    )


def _f3(variant: str, top1: float, fps: float | None, label: str, quote: str) -> PaperValue:
    source = f"Sec. 3.2 text on Figure 3: {quote}"
    return PaperValue("fig3", variant, "resnet18", top1_err=top1, train_fps=fps, label=label, source=source)


_WRN_SRC = "Table 3, copied from Chrabaszcz et al. 2017 [6]"

#: Every published row, in the paper's order within each table.
PAPER_VALUES: tuple[PaperValue, ...] = (
    # Table 2: ResNet-18 counterparts, downsampled ImageNet-1K (top-1 only).
    _t2("ResNet-18", 128, 52.00),
    _t2("ResNet-18-512d", 512, 49.08),
    _t2("Ave-GAP-16", 512, 47.44),
    _t2("GM-GAP-16-8", 512, 42.37),
    _t2("ResNet-18-8256d", 8256, 47.29),
    _t2("SR-SOP", 8256, 40.32),
    _t2("Ave-SOP-16", 8256, 40.28),
    _t2("Parametric SR-SOP", 8256, 40.01),
    _t2("GM-SOP-16-8", 8256, 38.21),
    # Table 3: state of the art, downsampled ImageNet-1K.
    _t3("WRN-36-1", "wrn36_1", 1.6, 128, 49.79, 24.17, "WRN-36-1* [6]", STAR, _WRN_SRC),
    _t3("WRN-36-2", "wrn36_2", 6.2, 256, 39.55, 16.57, "WRN-36-2* [6]", STAR, _WRN_SRC),
    _t3("WRN-36-5", "wrn36_5", 37.6, 640, 32.34, 12.64, "WRN-36-5* [6]", STAR, _WRN_SRC),
    _t3("ResNet-18-512d", "resnet18", 1.3, 512, 49.08, 24.25, "ResNet-18-512d [13]"),
    _t3("SG-MoE", "resnet18", 2.3, 512, 46.80, 22.63, "ResNet-18+One-layer-SG-MoE [33]"),
    _t3("NetVLAD", "resnet18", 8.9, 8192, 45.16, 21.73, "ResNet-18+NetVLAD [1]"),
    _t3("ResNet-50", "resnet50", 2.4, 128, 43.28, 19.39, "ResNet-50 [13]"),
    _t3("ResNet-50-512d", "resnet50", 2.8, 512, 41.79, 18.30, "ResNet-50-512d [13]"),
    _t3("ResNet-50-8256d", "resnet50", 11.6, 8256, 41.42, 18.14, "ResNet-50-8256d [13]"),
    _t3("GM-GAP-16-8", "resnet18", 2.3, 512, 42.37, 18.82, "GM-GAP-16-8 + ResNet-18 (Ours)"),
    _t3("GM-GAP-16-8", "resnet18", 2.3, 512, 40.03, 17.91, "GM-GAP-16-8 + ResNet-18* (Ours)", STAR),
    _t3("GM-GAP-16-8", "wrn36_2", 8.7, 512, 35.97, 14.41, "GM-GAP-16-8 + WRN-36-2 (Ours)"),
    _t3("GM-SOP-16-8", "resnet18", 10.3, 8256, 38.21, 17.01, "GM-SOP-16-8 + ResNet-18 (Ours)"),
    _t3("GM-SOP-16-8", "resnet50", 11.9, 8256, 35.73, 14.96, "GM-SOP-16-8 + ResNet-50 (Ours)"),
    _t3("GM-SOP-16-8", "wrn36_2", 15.7, 8256, 32.33, 12.35, "GM-SOP-16-8 + WRN-36-2 (Ours)"),
    # Table 4: Places365 at 100x100 (96x96 crops), ResNet-18.
    _t4("ResNet-18-512d", 512, 49.96, 19.19),
    _t4("GM-GAP-16-8", 512, 48.07, 17.84),
    _t4("ResNet-18-8256d", 8256, 49.99, 19.32),
    _t4("SR-SOP", 8256, 48.11, 18.01),
    _t4("Parametric SR-SOP", 8256, 47.48, 17.52),
    _t4("GM-SOP-16-8", 8256, 47.18, 17.02),
    # Figure 3 (GM-GAP over N and K): only the points the text of Sec. 3.2 quotes.
    _f3("GM-GAP-16-8", 42.37, 800.0, "GM-GAP-16-8", "'(42.37%, 800Hz)'"),
    _f3("GM-GAP-128-32", 42.52, None, "GM-GAP-128-32", "'N=128 and K=32 obtains 42.52%'"),
    _f3("ResNet-18-512d", 49.08, 1470.0, "baseline with one CM", "'(49.08%, 1470Hz)'"),
)

#: Training speed quoted in the text (images/s, GTX 1080, ResNet-18, 64x64 inputs), with the quote.
TRAIN_FPS: dict[tuple[str, str], tuple[float, str]] = {
    ("ResNet-18-512d", "resnet18"): (1470.0, "Sec. 3.2: 'baseline (49.08%, 1470Hz)'"),
    ("GM-GAP-16-8", "resnet18"): (800.0, "Sec. 3.2: 'N=16, K=8 (42.37%, 800Hz)'"),
    ("SR-SOP", "resnet18"): (670.0, "Sec. 3.2: '680Hz vs. 670Hz'"),
    ("Parametric SR-SOP", "resnet18"): (680.0, "Sec. 3.2: '680Hz vs. 670Hz'"),
}

#: Parameter counts (millions) for rows Table 3 does not list, as the released code gives them
#: (shared/reference/method-facts.md). Table 3 counts take precedence in :func:`paper_params`.
_RELEASED_PARAMS: dict[tuple[str, str], tuple[float, str]] = {
    ("ResNet-18", "resnet18"): (0.9, "released code per method-facts.md: '0.83M (0.9M)'"),
    ("SR-SOP", "resnet18"): (9.0, "released code per method-facts.md"),
}

#: Known mismatches between a published count and what the released configuration builds.
PARAMS_NOTES: dict[tuple[str, str], str] = {
    ("GM-SOP-16-8", "wrn36_2"): "published 15.7M; the released configuration counts about 17.8M"
}

_INDEX = {(v.table, v.variant, v.backbone, v.tag): v for v in PAPER_VALUES}


def paper_value(table: str, variant: str, backbone: str, tag: str = "") -> PaperValue | None:
    """The published row, or ``None``; an unknown ``table`` raises (a typo is not "no number")."""
    if table not in TABLES:
        raise ValueError(f"unknown paper table {table!r}; choose one of {', '.join(TABLES)}")
    return _INDEX.get((table, variant, backbone, tag or ""))


def paper_params(variant: str, backbone: str) -> tuple[float, str] | None:
    """Published parameter count (millions) and its source, or ``None``: Table 3 first, then the
    released code's counts for the rows Table 3 leaves out."""
    for tag in ("", STAR):
        v = _INDEX.get(("table3", variant, backbone, tag))
        if v is not None and v.params_m is not None:
            return v.params_m, v.source
    return _RELEASED_PARAMS.get((variant, backbone))
