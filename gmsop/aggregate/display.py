"""A built table's numbers as cells for people: one rule set, two dialects (Unicode text, LaTeX).

Errors with two decimals, "mean ± std" ("mean" alone for one seed, "—" for none); parameters in
millions; Δ signed; speeds in whole images/s; ratios with "×". Paper columns empty for every row
are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from gmsop import paper_values as pv
from gmsop.aggregate.claims import VERDICTS, finite, verdict_kind
from gmsop.backbones import paper_name

#: Marks a row none of whose seeds learned (error above 75% of chance; gmsop.aggregate.claims).
NOT_LEARNED_MARK = " °"
#: Marks a row some of whose seeds failed (did not learn or diverged); a footnote names them.
FAILED_MARK = " §"
#: The footnote's opening, before the list of failed seeds (tables and scorecard alike).
FAILED_NOTE = (
    f"{FAILED_MARK.strip()} failed seeds (top-1 error above 75% of chance, or diverged), "
    "counted in the row's mean; every claim on such a row is unstable, with no interval"
)

#: Colour of each kind of verdict, in :data:`VERDICTS` order: green the paper's direction, red the
#: opposite, amber no direction, purple failed seeds, grey no test.
VERDICT_COLOURS = dict(
    zip(VERDICTS, ("#1a7f37", "#cf222e", *["#9a6700"] * 3, "#8250df", "#57606a", "#57606a"))
)


def verdict_colour(verdict: str) -> str:
    """The colour of a verdict ("unstable (1 of 6 seeds failed)" takes the colour of "unstable")."""
    return VERDICT_COLOURS[verdict_kind(verdict)]


# each character of the first string becomes the LaTeX of the same position in the second
_LATEX = str.maketrans(
    dict(
        zip(
            "\\&%$#_{}~^±×Δ−—–≈†‡§°τ",
            r"\textbackslash{} \& \% \$ \# \_ \{ \} \textasciitilde{} \textasciicircum{} $\pm$ $\times$ "
            r"$\Delta$ $-$ -- -- $\approx$ \textsuperscript{\dag} \textsuperscript{\ddag} \S{} "
            r"\textdegree{} $\tau$".split(),
            strict=True,
        )
    )
)


@dataclass(frozen=True)
class Dialect:
    """The few glyphs that differ between plain Unicode output and LaTeX source."""

    pm: str
    missing: str
    times: str
    minus: str
    escape: Callable[[str], str]


TEXT = Dialect(" ± ", "—", "×", "−", lambda s: s)
LATEX = Dialect(r" $\pm$ ", "--", r"$\times$", "$-$", lambda s: s.translate(_LATEX))


def _err(mean, std, n, n_nonfinite, d: Dialect) -> str:
    """One error column's cell from that column's own statistics (its own non-finite count)."""
    if n == 0:
        return d.missing
    if n_nonfinite:
        return f"non-finite in {n_nonfinite} of {n} runs"
    return f"{mean:.2f}" + (f"{d.pm}{std:.2f}" if finite(std) else "")


def _signed(x, d: Dialect) -> str:
    return (d.minus if x < 0 else "+") + f"{abs(x):.2f}" if finite(x) else d.missing


def number(x, fmt: str, d: Dialect = TEXT) -> str:
    return format(float(x), fmt) if finite(x) else d.missing


def _fps(x, d: Dialect) -> str:
    return (f"{x:.0f}" if x >= 100 else f"{x:.1f}") if finite(x) else d.missing


def _ratio(x, d: Dialect) -> str:
    return f"{x:.2f}{d.times}" if finite(x) else d.missing


def diff_cell(claim: Mapping) -> str:
    """A tested claim's difference with its 95% interval, "+1.20 [-0.40, +2.80]" (no test: none)."""
    ci = f" [{claim['ci_low']:+.2f}, {claim['ci_high']:+.2f}]" if finite(claim["ci_low"]) else ""
    return number(claim["diff"], "+.2f", TEXT) + ci


def markdown_table(head: Sequence[str], left: Sequence[bool], lines: Iterable[Sequence]) -> list[str]:
    """A pipe table's lines: ``left`` aligns each column left (else right); cells are escaped."""
    esc = lambda s: str(s).replace("|", r"\|")  # noqa: E731
    rule = "|" + "|".join(":--" if a else "--:" for a in left) + "|"
    return ["| " + " | ".join(map(esc, head)) + " |", rule] + [
        "| " + " | ".join(map(esc, x)) + " |" for x in lines
    ]


def best_row(df: pd.DataFrame) -> int | None:
    """Position of the row with the lowest finite mean top-1 error (the paper sets it in bold)."""
    ok = df["top1_mean"].where(df["n"] > 0)
    ok = ok[ok.map(finite)]
    return int(df.index.get_loc(ok.idxmin())) if not ok.empty else None


def _has(df: pd.DataFrame, col: str) -> bool:
    return bool(df[col].map(finite).any())


def display_table(df: pd.DataFrame, dialect: Dialect = TEXT) -> pd.DataFrame:
    """One string cell per (row, shown column); headers are already in the dialect."""
    d = dialect
    cols: dict[str, list[str]] = {}
    cols["Method"] = [d.escape(str(m)) for m in df["method"]]
    cols["Backbone"] = [d.escape(paper_name(b)) for b in df["backbone"]]
    cols["Dim."] = [
        (f"{int(ours)}" if finite(ours) else d.missing)
        + (f" (paper {int(paper)})" if finite(paper) and not (finite(ours) and paper == ours) else "")
        for ours, paper in zip(df["dim"], df["dim_paper"])
    ]
    cols["Params (M)"] = [number(x, ".2f", d) for x in df["params_m"]]
    if _has(df, "params_paper_m"):
        marks = [
            ("" if not finite(x) or src.startswith("Table 3") else "†")
            + ("‡" if (v, b) in pv.PARAMS_NOTES else "")
            for x, src, v, b in zip(
                df["params_paper_m"], df["params_paper_source"], df["variant"], df["backbone"]
            )
        ]
        cols["Paper params (M)"] = [
            number(x, ".1f", d) + d.escape(m) for x, m in zip(df["params_paper_m"], marks)
        ]
    cols["n"] = [f"{n}" + (f" (+{u} unfinished)" if u else "") for n, u in zip(df["n"], df["n_unfinished"])]
    for k, name in (("top1", "Top-1"), ("top5", "Top-5")):
        cells = [
            _err(m, s, n, bad, d)
            for m, s, n, bad in zip(df[f"{k}_mean"], df[f"{k}_std"], df["n"], df[f"{k}_nonfinite"])
        ]
        if k == "top5":  # no finite top-5 where every top-1 is finite: the method does not report it
            cells = [
                d.missing if n and bad5 == n and not bad1 else c
                for c, n, bad1, bad5 in zip(cells, df["n"], df["top1_nonfinite"], df["top5_nonfinite"])
            ]
        if k == "top1":  # a row that did not learn, or with failed seeds, is marked where its error is
            marks = [
                NOT_LEARNED_MARK if not pd.isna(ok) and not bool(ok) else FAILED_MARK if bad else ""
                for ok, bad in zip(df["learned"], df["n_failed"])
            ]
            cells = [c + d.escape(m) for c, m in zip(cells, marks)]
        cols[f"{name} err. (%)"] = cells
        if _has(df, f"{k}_paper"):
            cols[f"Paper {name.lower()} (%)"] = [number(x, ".2f", d) for x in df[f"{k}_paper"]]
            cols[f"Δ {name.lower()}"] = [_signed(x, d) for x in df[f"{k}_delta"]]
    if df["paper_rank"].notna().any():
        cols["Rank: paper / ours"] = [
            f"{int(a)} / {int(b)}" if pd.notna(a) and pd.notna(b) else d.missing
            for a, b in zip(df["paper_rank"], df["our_rank"])
        ]
    cols["Train FPS (img/s)"] = [_fps(x, d) for x in df["fps"]]
    if df.attrs.get("baseline") is not None:
        cols["FPS rel."] = [_ratio(x, d) for x in df["fps_rel"]]
    if _has(df, "fps_paper"):
        cols["Paper FPS"] = [
            _fps(x, d) + (f" ({_ratio(r, d)})" if finite(r) else "") if finite(x) else d.missing
            for x, r in zip(df["fps_paper"], df["fps_paper_rel"])
        ]
    out = pd.DataFrame(cols, index=df.index)
    out.columns = [d.escape(c) for c in out.columns]
    return out


def failed_runs(df: pd.DataFrame) -> dict[str, list[tuple[int, str]]]:
    """Row label -> (seed, error text) of its failed seeds, for rows that learned on other seeds."""
    out = {}
    for m, text, ok in zip(df["method"], df["failed_seeds"], df["learned"]):
        if text and not pd.isna(ok) and bool(ok):
            runs = [part.split(":", 1) for part in str(text).split(";")]
            out[m] = [
                (int(seed), f"{float(err):.2f}" if finite(float(err)) else "diverged") for seed, err in runs
            ]
    return out


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def table_title(df: pd.DataFrame) -> str:
    """The spec's title, else one naming the table id."""
    return df.attrs.get("title") or f"Reproduction of {df.attrs.get('table_id') or 'table'}"


def table_notes(df: pd.DataFrame) -> list[str]:
    """Footnotes (Unicode text) that say what each number is; writers escape them."""
    notes = []
    if df.attrs.get("caption"):
        notes.append(str(df.attrs["caption"]))
    notes.append(
        "Errors: validation error in %, mean ± sample std over seeds; n = finished runs "
        "(seeds); — = no finished run."
    )
    if (df["learned"] == False).any():  # noqa: E712 - a nullable boolean column
        notes.append(
            f"{NOT_LEARNED_MARK.strip()} did not learn: no seed's top-1 error is at most 75% of "
            "chance (100·(1 − 1/classes)); no claim is tested on such a row."
        )
    failed = failed_runs(df)
    if failed:
        listed = "; ".join(
            f"{m}: " + ", ".join(f"seed {s} at {e}" for s, e in runs) for m, runs in failed.items()
        )
        notes.append(f"{FAILED_NOTE}: {listed}.")
    steps = df.attrs.get("step_sizes") or {}
    if steps:
        kinds = sorted(set(steps.values()))
        each = (
            f"every row at {kinds[0]}"
            if len(kinds) == 1
            else "; ".join(f"{m}: {v}" for m, v in steps.items())
        )
        notes.append(f"Step size: {each} (README, Known differences: learning rate at another batch).")
    paper_table = df.attrs.get("paper_table")
    name = pv.TABLE_NAMES.get(paper_table, paper_table)
    setting = (
        f"the paper's setting in full (its dataset {df.attrs.get('paper_dataset')}, complete, at its "
        "input size, full width, a schedule as long as the paper's)"
    )
    if paper_table and (_has(df, "top1_paper") or _has(df, "top5_paper")):
        notes.append(
            f"Paper: {name} of Wang et al., NeurIPS 2018, shown only for rows that ran in "
            f"{setting}; Δ = ours − paper (positive: ours is worse)."
        )
    outside = df.attrs.get("outside_paper_setting") or {}
    if paper_table and outside and (_has(df, "top1_paper") or len(set(outside.values())) > 1):
        notes.append(
            "Not in the paper's setting, so no published error: "
            + "; ".join(f"{m} ({why})" for m, why in outside.items())
            + "."
        )
    agreement = df.attrs.get("rank_agreement")
    if paper_table and agreement and (agreement["n"] or agreement.get("left_out")):
        elsewhere = ""
        if not _has(df, "top1_paper"):
            why = f" ({next(iter(outside.values()))})" if len(set(outside.values())) == 1 else ""
            elsewhere = (
                f" No row ran in {setting}, so the paper's errors are not printed; only the orders are "
                f"compared{why}."
            )
        tau, n, left = agreement["tau"], agreement["n"], agreement.get("left_out") or []
        tau_text = f"Kendall τ = {tau:.2f}" if finite(tau) else "Kendall τ undefined"
        left_text = f"; {len(left)} row{_s(len(left))} left out: " + ", ".join(f"{m} ({w})" for m, w in left)
        notes.append(
            f"Rank: the row's place (1 = lowest top-1 error) among the rows {name} prints and our "
            f"runs learned with no failed seed; rank agreement {tau_text} over {n} row{_s(n)}"
            f"{left_text if left else ''}.{elsewhere}"
        )
    devices = sorted({str(x) for x in df["fps_device"].dropna()})
    on = f" on {', '.join(devices)}" if devices else ""
    bench = df.attrs.get("fps_source") == "bench"
    what = "median over benchmark files" if bench else "mean over the runs' measured throughput"
    notes.append(f"Train FPS: training images/s, {what}{on}.")
    if df.attrs.get("baseline") is not None:
        notes.append(f"FPS rel.: ratio to the {df.attrs['baseline']} row.")
    if _has(df, "fps_paper"):
        notes.append(
            "Paper FPS: speed quoted in the paper's text (GTX 1080); compare ratios, not absolute values."
        )
    if _has(df, "params_paper_m"):
        if any(
            finite(x) and not s.startswith("Table 3")
            for x, s in zip(df["params_paper_m"], df["params_paper_source"])
        ):
            notes.append("† not printed in the paper: the count of the authors' released code.")
        for v, b in zip(df["variant"], df["backbone"]):
            if (v, b) in pv.PARAMS_NOTES:
                notes.append(f"‡ {v} on {paper_name(b)}: {pv.PARAMS_NOTES[(v, b)]}.")
    return notes
