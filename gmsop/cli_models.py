"""``gmsop models``: every variant x backbone with parameters, representation dim and FLOPs.

Beside each count stands the paper's published one where Table 3 gives it (or the released code's
for the two rows it leaves out; GM-SOP-16-8 on WRN-36-2 is the one known mismatch, 17.8M released
against 15.7M printed) and the schedule family a run of the variant trains with by default.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys

from gmsop.backbones import list_backbones
from gmsop.flops import count_flops, count_params
from gmsop.protocol import PROTOCOLS
from gmsop.registry import build_model, list_variants, resolve_variant


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gmsop models",
        description="List every variant x backbone with parameter count, representation "
        "dimension and forward FLOPs per image (torch.utils.flop_counter, eval mode: a gated "
        "mixture counts the K components it runs).",
    )
    dflt = "(default: %(default)s)"
    p.add_argument("--variants", nargs="+", metavar="NAME", help="variant names (default: all)")
    p.add_argument(
        "--backbones", nargs="+", metavar="NAME", default=list_backbones(), help=f"backbones {dflt}"
    )
    p.add_argument(
        "--input-size", type=int, default=64, metavar="PX", help=f"square input size in pixels {dflt}"
    )
    p.add_argument("--num-classes", type=int, default=1000, metavar="N", help=f"classifier outputs {dflt}")
    p.add_argument(
        "--protocol", default="official", choices=sorted(PROTOCOLS), help=f"reading of the method {dflt}"
    )
    p.add_argument(
        "--width-mult",
        type=float,
        default=1.0,
        metavar="M",
        help=f"scale every width as the embedded default does (0.25); published counts only at 1.0 {dflt}",
    )
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (faster)")
    formats = ["text", "csv", "json", "markdown"]
    p.add_argument("--format", choices=formats, default="text", help=f"output format {dflt}")
    return p


def _format_text(rows: list[dict], markdown: bool) -> str:
    cols = list(rows[0])
    cells = [[("—" if r[c] is None else str(r[c])) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]

    def line(values) -> str:
        padded = [v.ljust(w) for v, w in zip(values, widths)]
        return "| " + " | ".join(padded) + " |" if markdown else "  ".join(padded)

    dashes = ["-" * w for w in widths]
    rule = "|" + "|".join(f"-{d}-" for d in dashes) + "|" if markdown else line(dashes)
    return "\n".join([line(cols), rule, *map(line, cells)])


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    rows = []
    try:
        for backbone, variant in itertools.product(a.backbones, a.variants or list_variants()):
            kw = {"backbone": backbone, "protocol": a.protocol, "width_mult": a.width_mult}
            resolved = resolve_variant(variant, **kw)
            model = build_model(variant, num_classes=a.num_classes, **kw)
            paper = resolved.paper_params if a.num_classes == 1000 else None  # published at 1000 classes
            size = (3, a.input_size, a.input_size)
            rows.append(
                {
                    "variant": resolved.display_name,
                    "backbone": resolved.backbone,
                    "schedule_family": resolved.schedule_family,
                    "classifier": resolved.classifier,
                    "params_M": round(count_params(model) / 1e6, 3),
                    "paper_params_M": paper[0] if paper is not None else None,
                    "rep_dim": model.rep_dim,
                    "gflops_per_image": None if a.no_flops else round(count_flops(model, size) / 1e9, 4),
                }
            )
    except ValueError as err:
        print(f"gmsop models: error: {err}", file=sys.stderr)
        return 2
    if a.format == "json":
        print(json.dumps(rows, indent=2))
    elif a.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(_format_text(rows, markdown=a.format == "markdown"))
    return 0
