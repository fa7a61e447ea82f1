"""The scorecard: every claim of every experiment in one table, with where it was tested.

A reader's first question is "does the paper hold up?"; the answer is spread over the tables'
claim lists, each at its own scale. The scorecard puts them in one table, one line per claim,
with the setting it was tested in (dataset, classes, training images, epochs, width, seeds per
side), the difference with its 95% interval, the probability of improvement and the verdict
(:mod:`claims`). It is computed from the result files with the same row selection and the same
statistics as the tables (:func:`tables.row_errors`, :func:`claims.evaluate_claims`), so the two
can never disagree. Written as CSV (numbers), Markdown, a self-contained HTML page, and an HTML
fragment the Snakemake report shows first on its landing page.
"""
from __future__ import annotations

import html
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from gmsop.aggregate.claims import CLAIM_COLUMNS, evaluate_claims
from gmsop.aggregate.select import one_value, row_runs
from gmsop.aggregate.tables import row_errors
from gmsop.atomic import atomic_write

__all__ = ["SCORECARD_COLUMNS", "build_scorecard", "render_scorecard_markdown", "render_scorecard_html",
           "write_scorecard"]

_CONTEXT = ("dataset", "classes", "train_images", "epochs", "width")
SCORECARD_COLUMNS: tuple[str, ...] = ("experiment", "title") + _CONTEXT + tuple(CLAIM_COLUMNS)


def _side(runs: pd.DataFrame, row: Any) -> dict[str, str]:
    fin = row_runs(runs, row)
    def val(col: str, what: str) -> str:
        v = one_value(fin[col], what, row) if not fin.empty and col in fin else None
        return "—" if v is None else f"{int(v)}"
    return {"dataset": f"{row.dataset} ({row.dataset_name})", "classes": val("hp.num_classes", "class counts"),
            "train_images": val("hp.train_size", "training-set sizes"), "epochs": val("hp.epochs", "epoch counts"),
            "width": "—" if row.width_mult is None else f"{row.width_mult:g}"}


def _context(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    """One value where both sides agree, 'left / right' where they differ (e.g. epochs)."""
    return {k: a[k] if a[k] == b[k] else f"{a[k]} / {b[k]}" for k in _CONTEXT}


def build_scorecard(experiments: Iterable[Any], runs: pd.DataFrame) -> pd.DataFrame:
    """One row per claim of every experiment (in plan order), columns :data:`SCORECARD_COLUMNS`."""
    out = []
    for exp in experiments:
        if not exp.claims:
            continue
        errors, classes = row_errors(runs, exp)
        results = evaluate_claims(exp.claims, errors, classes)
        for claim, rec in zip(exp.claims, results.to_dict("records")):
            ctx = _context(_side(runs, exp.row(claim.better)), _side(runs, exp.row(claim.worse)))
            out.append({"experiment": exp.name, "title": exp.title, **ctx, **rec})
    return pd.DataFrame(out, columns=list(SCORECARD_COLUMNS))


def _num(x: Any, fmt: str) -> str:
    return format(float(x), fmt) if x == x and x is not None else "—"


def _cells(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and text cells: the claim and its verdict first (what a reader looks for), then the
    numbers, then where it was tested."""
    head = ["Verdict", "Claim", "Experiment", "Difference [95% CI]", "P(left better)", "Ours", "Seeds",
            "Dataset", "Classes", "Train images", "Epochs", "Width"]
    lines = []
    for _, r in df.iterrows():
        diff = _num(r["diff"], "+.2f")
        if r["ci_low"] == r["ci_low"]:
            diff += f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
        lines.append([r["verdict"], r["claim"], r["experiment"], diff, _num(r["p_improvement"], ".2f"),
                      f"{_num(r['better_mean'], '.2f')} vs {_num(r['worse_mean'], '.2f')}",
                      f"{r['n_better']} / {r['n_worse']}", r["dataset"], r["classes"], r["train_images"], r["epochs"],
                      r["width"]])
    return head, lines


_TEXT_COLUMNS = (0, 1, 2, 7)  # left-aligned


def _summary(df: pd.DataFrame) -> str:
    counts = df["verdict"].value_counts()
    parts = ", ".join(f"{int(n)} {v}" for v, n in counts.items())
    return (f"{len(df)} claim{'' if len(df) == 1 else 's'} of the paper checked on our runs: {parts or 'none'}. A claim holds or is reversed only "
            "when the 95% Welch interval of the difference excludes 0; a row whose mean error is above 75% of "
            "chance did not learn and supports no verdict.")


def render_scorecard_markdown(df: pd.DataFrame) -> str:
    head, lines = _cells(df)
    esc = lambda s: str(s).replace("|", r"\|")  # noqa: E731
    out = ["### Scorecard: the paper's claims on our runs", "", _summary(df), "",
           "| " + " | ".join(head) + " |", "|" + "|".join(":--" if i in _TEXT_COLUMNS else "--:"
                                                       for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(esc(c) for c in line) + " |" for line in lines]
    out += ["", "Difference: mean top-1 error of the left row minus the right row (negative favours the claim). "
            "P(left better): probability of improvement over seed pairs (with 3 or more seeds per side)."]
    return "\n".join(out) + "\n"


_VERDICT_COLOUR = {"holds": "#1a7f37", "reversed": "#cf222e", "inconclusive": "#9a6700",
                   "inconclusive (1 seed)": "#9a6700", "not learned": "#57606a", "missing": "#57606a"}


def render_scorecard_html(df: pd.DataFrame, fragment: bool = False) -> str:
    """The scorecard as a page, or (``fragment``) as a ``<div>`` with inline styles for the report."""
    head, lines = _cells(df)
    cell = 'style="padding:3px 8px;border-bottom:1px solid #d0d7de;text-align:{};white-space:nowrap"'
    rows = []
    for line in lines:
        tds = [f'<td {cell.format("left" if i in _TEXT_COLUMNS else "right")}>{html.escape(str(c))}</td>'
               for i, c in enumerate(line)]
        colour = _VERDICT_COLOUR.get(line[0], "#1f2328")
        tds[0] = f'<td {cell.format("left")}><b style="color:{colour}">{html.escape(line[0])}</b></td>'
        rows.append("<tr>" + "".join(tds) + "</tr>")
    table = ('<div style="overflow-x:auto;max-width:100%"><table id="gmsop-scorecard" '
             'style="border-collapse:collapse;font-size:12px;width:max-content">'
             "<caption style=\"text-align:left;font-weight:600;padding-bottom:6px\">Scorecard: the paper's claims "
             "on our runs</caption><thead><tr>"
             + "".join(f'<th {cell.format("left" if i in _TEXT_COLUMNS else "right")}>{html.escape(h)}</th>'
                       for i, h in enumerate(head))
             + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")
    body = (f'<div class="gmsop-scorecard"><p>{html.escape(_summary(df))}</p>{table}'
            '<p style="font-size:12px;color:#57606a">Difference: mean top-1 error of the left row minus the right '
            "row (negative favours the claim). Tables and figures follow under Results.</p></div>")
    if fragment:
        return body + "\n"
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>gmsop scorecard</title></head>'
            f'<body style="font-family:system-ui,sans-serif;margin:1.5em">{body}</body></html>\n')


def write_scorecard(df: pd.DataFrame, stem: str | os.PathLike, landing: str | os.PathLike | None = None) -> list[Path]:
    """``<stem>.csv``, ``.md``, ``.html`` and, with ``landing``, the report's landing fragment."""
    stem = Path(stem)
    texts = {stem.with_suffix(".csv"): df.to_csv(index=False, lineterminator="\n"),
             stem.with_suffix(".md"): render_scorecard_markdown(df),
             stem.with_suffix(".html"): render_scorecard_html(df)}
    if landing is not None:
        texts[Path(landing)] = render_scorecard_html(df, fragment=True)
    return [atomic_write(p, t) for p, t in texts.items()]
