"""Write a built table as CSV (the numbers, for scripts), Markdown, a self-contained HTML page and
a booktabs LaTeX float, each through :func:`gmsop.atomic.atomic_write`.

The human formats share the cell rules of :mod:`display`; the best row (lowest mean top-1 error)
is set in bold as in the paper.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from pathlib import Path

import pandas as pd

from gmsop.aggregate.claims import LEVEL, TESTED
from gmsop.aggregate.display import (
    LATEX,
    TEXT,
    best_row,
    diff_cell,
    display_table,
    markdown_table,
    number,
    table_notes,
    table_title,
)
from gmsop.atomic import atomic_write

_LEFT = {"Method", "Backbone"}  # text columns; every other column is right-aligned
_BOLD = {"Method", "Top-1 err. (%)"}

CLAIM_HEAD = tuple(
    "Claim (top-1 err., lower on the left)|Ours|Difference [95% CI]|n|P(left better)|Verdict".split("|")
)
_CLAIM_ALIGN = ("l", "r", "r", "r", "r", "l")
_CLAIM_NAME = "The paper's claims, on our runs"
_CLAIM_DETAIL = (
    "(difference of mean top-1 errors, left − right, with its 95% Welch t-interval over seeds; "
    "holds / reversed only when the interval excludes 0)"
)


def claim_cells(records) -> list[tuple[str, ...]]:
    """One line of text cells per evaluated claim (records of :data:`claims.CLAIM_COLUMNS`)."""
    return [
        (
            c["claim"],
            f"{number(c['better_mean'], '.2f')} vs {number(c['worse_mean'], '.2f')}",
            diff_cell(c),
            f"{c['n_better']} / {c['n_worse']}",
            number(c["p_improvement"], ".2f"),
            c["verdict"],
        )
        for c in records or ()
    ]


def claims_summary(records) -> str:
    """How many claims the table checks, how many it tests and at what level, counts per verdict."""
    records = list(records or ())
    counts = Counter(c["verdict"] for c in records)
    tested = sum(counts[v] for v in TESTED)
    return (
        f"This table checks {len(records)} claim{'s' if len(records) != 1 else ''} and tests {tested} of "
        f"them, each with a {LEVEL:.0%} Welch interval (a {1 - LEVEL:.0%} two-sided test per claim, not "
        f"adjusted for testing several; the scorecard adds Holm's adjustment over all claims): "
        f"{', '.join(f'{n} {v}' for v, n in counts.items())}."
    )


def render_csv(df: pd.DataFrame) -> str:
    """The numeric table as CSV (no index); ``pd.read_csv`` gives the same values back."""
    return df.to_csv(index=False, lineterminator="\n")


def render_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table with a heading and a bulleted list of notes."""
    cells = display_table(df)
    best = best_row(df)
    rows = [
        [f"**{v}**" if pos == best and c in _BOLD else v for c, v in row.items()]
        for pos, (_, row) in enumerate(cells.iterrows())
    ]
    left = [c in _LEFT for c in cells.columns]
    lines = [f"### {table_title(df)}", "", *markdown_table(cells.columns, left, rows), ""]
    lines += [f"- {n}" for n in table_notes(df)]
    claims = claim_cells(df.attrs.get("claims"))
    if claims:
        lines += ["", f"**{_CLAIM_NAME}** {_CLAIM_DETAIL}", ""]
        lines += markdown_table(CLAIM_HEAD, [a == "l" for a in _CLAIM_ALIGN], claims)
        lines += [
            "",
            claims_summary(df.attrs.get("claims")) + " All claims of all experiments: results/scorecard.md.",
        ]
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif;
       margin: 1.5em; color: #1f2328; background: #fff; }
table.gmsop { border-collapse: collapse; font-size: 14px; }
table.gmsop caption { caption-side: top; text-align: left; font-weight: 600; font-size: 15px;
                      padding-bottom: 0.6em; }
table.gmsop th, table.gmsop td { padding: 4px 12px; white-space: nowrap; }
table.gmsop thead th { border-top: 2px solid #1f2328; border-bottom: 1px solid #1f2328;
                       font-weight: 600; }
table.gmsop tbody tr:last-child td { border-bottom: 2px solid #1f2328; }
table.gmsop tbody tr:hover td { background: #f3f6fa; }
table.gmsop .l { text-align: left; }
table.gmsop .r { text-align: right; font-variant-numeric: tabular-nums; }
table.gmsop td.missing { color: #8c959f; }
table.gmsop td.best { font-weight: 700; }
ul.notes, p.notes { font-size: 12px; color: #57606a; max-width: 64em; padding-left: 1.2em; }
""".strip()


def _tr(tag: str, cells, classes) -> str:
    """One HTML table row of ``tag`` cells, each escaped, with its class."""
    return (
        "<tr>"
        + "".join(f'<{tag} class="{c}">{html.escape(v)}</{tag}>' for v, c in zip(cells, classes))
        + "</tr>"
    )


def render_html(df: pd.DataFrame) -> str:
    """A complete, self-contained HTML page holding the table and its notes."""
    cells = display_table(df)
    best = best_row(df)
    title = html.escape(table_title(df))
    table_id = html.escape(str(df.attrs.get("table_id") or "table"), quote=True)
    align = ["l" if c in _LEFT else "r" for c in cells.columns]
    out = [
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>',
        f"<style>\n{_CSS}\n</style>\n</head>\n<body>",
        f'<table class="gmsop" id="{table_id}">\n<caption>{title}</caption>\n<thead><tr>',
        *(f'<th class="{a}">{html.escape(c)}</th>' for c, a in zip(cells.columns, align)),
        "</tr></thead>\n<tbody>",
    ]
    for pos, (_, row) in enumerate(cells.iterrows()):
        classes = [
            " ".join(
                [a] + ["missing"] * val.startswith(TEXT.missing) + ["best"] * (pos == best and col in _BOLD)
            )
            for (col, val), a in zip(row.items(), align)
        ]
        out.append(_tr("td", row, classes))
    out += [
        '</tbody>\n</table>\n<ul class="notes">',
        *(f"<li>{html.escape(n)}</li>" for n in table_notes(df)),
    ]
    out.append("</ul>")
    claims = claim_cells(df.attrs.get("claims"))
    if claims:
        out += [
            f'<table class="gmsop" id="{table_id}-claims">',
            f"<caption>{html.escape(f'{_CLAIM_NAME} {_CLAIM_DETAIL}')}</caption>",
            f"<thead>{_tr('th', CLAIM_HEAD, _CLAIM_ALIGN)}</thead>\n<tbody>",
            *(_tr("td", line, _CLAIM_ALIGN) for line in claims),
            "</tbody>\n</table>",
            f'<p class="notes">{html.escape(claims_summary(df.attrs.get("claims")))} All claims of all '
            "experiments are in the scorecard.</p>",
        ]
    out.append("</body>\n</html>")
    return "\n".join(out) + "\n"


def render_latex(df: pd.DataFrame) -> str:
    """A booktabs ``table`` float; the label is ``tab:<table id>``."""
    cells = display_table(df, LATEX)
    best = best_row(df)
    bold_cols = {LATEX.escape(c) for c in _BOLD}
    left_cols = {LATEX.escape(c) for c in _LEFT}
    spec = "".join("l" if c in left_cols else "r" for c in cells.columns)
    label = str(df.attrs.get("table_id") or "table").replace(" ", "-")
    lines = [
        "% Written by gmsop.aggregate.writers; needs \\usepackage{booktabs}.",
        "\\begin{table}[t]\n\\centering\n\\small",
        f"\\caption{{{LATEX.escape(table_title(df))}}}\n\\label{{tab:{label}}}",
        f"\\begin{{tabular}}{{{spec}}}\n\\toprule",
        " & ".join(cells.columns) + " \\\\\n\\midrule",
    ]
    for pos, (_, row) in enumerate(cells.iterrows()):
        vals = [f"\\textbf{{{v}}}" if pos == best and c in bold_cols else v for c, v in row.items()]
        lines.append(" & ".join(vals) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "", "\\smallskip", "{\\footnotesize"]
    lines += [LATEX.escape(n) + "\\par" for n in table_notes(df)]
    lines += ["}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, stem: str | os.PathLike) -> dict[str, Path]:
    """Write ``<stem>.csv/.md/.html/.tex``; returns format -> path. Every output is rendered before
    the first is written, so an error leaves no partial set."""
    stem = Path(stem)
    texts = {
        "csv": render_csv(df),
        "md": render_markdown(df),
        "html": render_html(df),
        "tex": render_latex(df),
    }
    return {f: atomic_write(stem.with_name(f"{stem.name}.{f}"), t) for f, t in texts.items()}
