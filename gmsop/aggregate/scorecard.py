"""The scorecard: every claim of every experiment in one table, with the setting it was tested in.

Same row selection and statistics as the tables (:func:`tables.row_errors`,
:func:`claims.evaluate_claims`), so the two never disagree; Holm's step-down adjustment
(:func:`claims.adjust_holm`) over every claim tested with an interval. Written as CSV, Markdown,
HTML, the forest plot (:mod:`forest`) and the fragment the Snakemake report shows first.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from gmsop.aggregate.claims import (
    CLAIM_COLUMNS,
    HOLM_COLUMNS,
    LEVEL,
    TESTED,
    adjust_holm,
    evaluate_claims,
    failed_seeds,
)
from gmsop.aggregate.display import (
    FAILED_MARK,
    FAILED_NOTE,
    diff_cell,
    markdown_table,
    number,
    verdict_colour,
)
from gmsop.aggregate.figures import render_figure
from gmsop.aggregate.forest import plot_forest
from gmsop.aggregate.select import one_value, row_runs, step_size
from gmsop.aggregate.tables import row_errors
from gmsop.atomic import atomic_write
from gmsop.experiments import Experiment, Row

_CONTEXT = ("dataset", "classes", "train_images", "epochs", "width", "step_size")
SCORECARD_COLUMNS: tuple[str, ...] = ("experiment", "title") + _CONTEXT + tuple(CLAIM_COLUMNS) + HOLM_COLUMNS


def _side(runs: pd.DataFrame, row: Row) -> dict[str, str]:
    fin = row_runs(runs, row)

    def val(col: str, what: str) -> str:
        v = one_value(fin[col], what, row) if not fin.empty and col in fin else None
        return "—" if v is None else f"{int(v)}"

    return {
        "dataset": f"{row.dataset} ({row.dataset_name})",
        "classes": val("hp.num_classes", "class counts"),
        "train_images": val("hp.train_size", "training-set sizes"),
        "epochs": val("hp.epochs", "epoch counts"),
        "width": "—" if row.width_mult is None else f"{row.width_mult:g}",
        "step_size": step_size(fin, row) or "—",
    }


def build_scorecard(experiments: Iterable[Experiment], runs: pd.DataFrame) -> pd.DataFrame:
    """One row per claim of every experiment, columns :data:`SCORECARD_COLUMNS`, Holm-adjusted;
    ``attrs["failed_seeds"]``: (experiment, row, seed, error) of the failed seeds of claimed rows
    that learned on other seeds."""
    out, failed = [], []
    for exp in experiments:
        if not exp.claims:
            continue
        errors, classes, seeds = row_errors(runs, exp)
        results = evaluate_claims(exp.claims, errors, classes)
        for claim, rec in zip(exp.claims, results.to_dict("records")):
            a, b = _side(runs, exp.row(claim.better)), _side(runs, exp.row(claim.worse))
            ctx = {k: a[k] if a[k] == b[k] else f"{a[k]} / {b[k]}" for k in _CONTEXT}  # 'left / right'
            out.append({"experiment": exp.name, "title": exp.title, **ctx, **rec})
        used = dict.fromkeys(label for c in exp.claims for label in (c.better, c.worse))
        for label in used:
            bad = failed_seeds(errors[label], classes[label])
            if bad.any() and not bad.all():
                failed += [
                    {"experiment": exp.name, "row": label, "seed": s, "error": e}
                    for s, e, b in zip(seeds[label], errors[label], bad)
                    if b
                ]
    card = adjust_holm(pd.DataFrame(out, columns=list(SCORECARD_COLUMNS[: -len(HOLM_COLUMNS)])))
    card.attrs["failed_seeds"] = failed
    return card[list(SCORECARD_COLUMNS)]


def _interval(low: float, high: float) -> str:
    return f"[{low:+.2f}, {high:+.2f}]" if low == low else "—"


#: Header of the scorecard's cells: verdicts and claim first, then numbers, then the setting.
SCORECARD_HEAD = tuple(
    "Verdict (Holm)|Verdict (unadjusted)|Claim|Difference [95% CI]|Holm interval|P(left better)|Ours|Seeds|"
    "Tested on".split("|")
)
_TEXT_COLUMNS = (0, 1, 2, 8)  # left-aligned


def _cells(df: pd.DataFrame) -> list[list[str]]:
    failed = {(f["experiment"], f["row"]) for f in df.attrs.get("failed_seeds", ())}
    lines = []
    for _, r in df.iterrows():
        mark = [FAILED_MARK.strip() if (r["experiment"], r[s]) in failed else "" for s in ("better", "worse")]
        ours = f"{number(r['better_mean'], '.2f')}{mark[0]} vs {number(r['worse_mean'], '.2f')}{mark[1]}"
        setting = (
            f"{r['experiment']}: {r['dataset']}, classes {r['classes']}, training images "
            f"{r['train_images']}, epochs {r['epochs']}, width {r['width']}, {r['step_size']}"
        )
        tests = [diff_cell(r), _interval(r["holm_low"], r["holm_high"]), number(r["p_improvement"], ".2f")]
        seeds = f"{r['n_better']} / {r['n_worse']}"
        lines.append([r["verdict_holm"], r["verdict"], r["claim"], *tests, ours, seeds, setting])
    return lines


def _counts(verdicts: Iterable[str]) -> str:
    counts = pd.Series(list(verdicts), dtype=object).value_counts()
    return ", ".join(f"{int(n)} {v}" for v, n in counts.items()) or "none"


def scorecard_summary(df: pd.DataFrame) -> str:
    """How many claims, which family Holm adjusts over, the verdict counts."""
    tested = df[df["verdict"].isin(TESTED)]
    m = len(tested)
    untested = df[~df["verdict"].isin(TESTED)]
    plural = "" if m == 1 else "s"
    return (
        f"{len(df)} claim{'' if len(df) == 1 else 's'} of the paper checked on our runs; {m} tested "
        f"with a {LEVEL:.0%} Welch interval. Family for Holm's adjustment: the {m} claim{plural} "
        f"this scorecard tests with an interval (family-wise error {1 - LEVEL:.0%}). "
        f"Holm-adjusted: {_counts(tested['verdict_holm'])}; unadjusted: {_counts(tested['verdict'])}; "
        f"not tested: {_counts(untested['verdict'])}. A claim holds or is "
        "reversed only when its interval excludes 0; a row none of whose seeds learned (top-1 error "
        "above 75% of chance) or with failed seeds supports no test."
    )


def _notes(df: pd.DataFrame) -> list[str]:
    notes = [
        "Difference: mean top-1 error of the left row minus the right row (negative favours the claim), "
        f"with its {LEVEL:.0%} Welch interval. Holm interval: the Welch interval at the level Holm's "
        "step-down procedure tests the claim at; it excludes 0 exactly when the Holm verdict is a "
        "direction. P(left better): probability of improvement over seed pairs (3 or more seeds per "
        "side)."
    ]
    failed = df.attrs.get("failed_seeds") or []
    if failed:
        listed = "; ".join(
            f"{f['experiment']} / {f['row']}: seed {f['seed']} at "
            + (f"{f['error']:.2f}" if math.isfinite(f["error"]) else "diverged")
            for f in failed
        )
        notes.append(f"{FAILED_NOTE}: {listed}.")
    return notes


def render_scorecard_markdown(df: pd.DataFrame) -> str:
    left = [i in _TEXT_COLUMNS for i in range(len(SCORECARD_HEAD))]
    out = ["### Scorecard: the paper's claims on our runs", "", scorecard_summary(df), ""]
    out += markdown_table(SCORECARD_HEAD, left, _cells(df))
    out += [""] + [f"- {n}" for n in _notes(df)]
    return "\n".join(out) + "\n"


def _svg_figure(svg: bytes) -> str:
    """An SVG file's ``<svg>`` element in a ``<figure>``, scaled to the width of its container."""
    text = svg.decode("utf-8")
    scaled = r'<svg \1style="width:100%;height:auto;max-width:900px"'
    text = re.sub(r'<svg ([^>]*?)width="[^"]*" height="[^"]*"', scaled, text[text.index("<svg") :], count=1)
    return f'<figure id="gmsop-forest" style="margin:0 0 12px 0">{text}</figure>'


#: Widens the report's 32rem landing column to the page (the workflow graph moves below it).
_LANDING_STYLE = (
    "<style>.prose:has(.gmsop-scorecard){max-width:none}"
    "div:has(> div > .prose .gmsop-scorecard){flex-wrap:wrap}</style>"
)


def render_scorecard_html(df: pd.DataFrame, fragment: bool = False, plot_svg: bytes | None = None) -> str:
    """The scorecard as a page, or (``fragment``) as a ``<div>`` with inline styles for the report;
    ``plot_svg`` (the forest plot as SVG) goes above the table."""
    cell = (
        'style="padding:3px 6px;border-bottom:1px solid #d0d7de;text-align:{};vertical-align:top;'
        'white-space:{}"'
    )

    def style(i: int) -> str:  # text is left-aligned and wraps; numbers never do
        return cell.format(*(("left", "normal") if i in _TEXT_COLUMNS else ("right", "nowrap")))

    rows = []
    for line in _cells(df):
        tds = [f"<td {style(i)}>{html.escape(str(c))}</td>" for i, c in enumerate(line)]
        colour = verdict_colour(line[0])
        tds[0] = f'<td {style(0)}><b style="color:{colour}">{html.escape(line[0])}</b></td>'
        rows.append("<tr>" + "".join(tds) + "</tr>")
    table = (
        '<table id="gmsop-scorecard" style="border-collapse:collapse;font-size:12px;width:100%">'
        '<caption style="text-align:left;font-weight:600;padding-bottom:6px">Scorecard: the paper\'s claims '
        "on our runs</caption><thead><tr>"
        + "".join(f"<th {style(i)}>{html.escape(h)}</th>" for i, h in enumerate(SCORECARD_HEAD))
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    plot = _svg_figure(plot_svg) if plot_svg else ""
    notes = "".join(f'<p style="font-size:12px;color:#57606a">{html.escape(n)}</p>' for n in _notes(df))
    body = (
        f'<div class="gmsop-scorecard"><p>{html.escape(scorecard_summary(df))}</p>{plot}{table}{notes}'
        '<p style="font-size:12px;color:#57606a">Tables and figures follow under Results.</p></div>'
    )
    if fragment:
        return _LANDING_STYLE + body + "\n"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>gmsop scorecard</title></head>'
        f'<body style="font-family:system-ui,sans-serif;margin:1.5em">{body}</body></html>\n'
    )


def write_scorecard(
    df: pd.DataFrame, stem: str | os.PathLike, landing: str | os.PathLike | None = None
) -> list[Path]:
    """``<stem>.csv``, ``.md``, ``.html``, the forest plot ``<stem>.svg`` and ``.png`` and, with
    ``landing``, the report's landing fragment (the plot above the table)."""
    stem = Path(stem)
    fig = plot_forest(df)
    svg = render_figure(fig, "svg")
    texts: dict[Path, str | bytes] = {
        stem.with_suffix(".svg"): svg,
        stem.with_suffix(".png"): render_figure(fig, "png"),
    }
    texts[stem.with_suffix(".csv")] = df.to_csv(index=False, lineterminator="\n")
    texts[stem.with_suffix(".md")] = render_scorecard_markdown(df)
    texts[stem.with_suffix(".html")] = render_scorecard_html(df, plot_svg=svg)
    if landing is not None:
        texts[Path(landing)] = render_scorecard_html(df, fragment=True, plot_svg=svg)
    return [atomic_write(p, t) for p, t in texts.items()]
