"""The scorecard as a reader sees it: every rendered cell (Markdown and HTML) and every plotted
value checked number by number against independent computations (scipy's Welch test, Holm's
procedure by hand, a brute-force count over seed pairs), and the files the workflow writes."""

import re
from html.parser import HTMLParser

import numpy as np
import pytest
from planned import make_experiment, make_row
from result_files import make_metrics, write_json
from scipy import stats

from gmsop.aggregate.forest import forest_data, plot_forest
from gmsop.aggregate.load import load_metrics
from gmsop.aggregate.scorecard import (
    build_scorecard,
    render_scorecard_html,
    render_scorecard_markdown,
    write_scorecard,
)
from gmsop.aggregate.tables import build_table
from gmsop.aggregate.writers import render_html, render_markdown

#: Row label -> top-1 errors by seed (16 classes: a seed above 70.31% failed).
ERRORS = {
    "A": [30.0, 31.0, 32.5],
    "B": [40.0, 42.0, 41.0],
    "C": [50.0, 52.0, 51.0],
    "D": [30.0, 31.0, 29.5],
    "E": [40.0, 44.0, 42.5],
    "F": [41.0, 43.5, 39.0],
    "G": [38.0, 39.0, 38.5],
    "H": [30.7, 84.8, 28.2],
    "I": [40.0, 40.0],
    "J": [41.0, 41.0],
    "K": [60.0, 61.0, 62.0],
    "L": [71.0, 72.0, 73.0],
}
#: Two experiments, so the Holm family spans tables: tested claims first, then every untested kind.
CLAIMS = {"t1": ["A < B", "C < D", "E < F", "G < B"], "t2": ["A < G", "H < B", "I < J", "K < L"]}
TESTED = ["A < B", "C < D", "E < F", "G < B", "A < G"]


@pytest.fixture(scope="module")
def card_and_tables(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("card")
    for label, errs in ERRORS.items():
        for seed, err in enumerate(errs):
            write_json(
                tmp / label / f"seed{seed}" / "metrics.json",
                make_metrics("SR-SOP", seed=seed, top1=err, run_id=f"run-{label}", classes=16),
            )
    runs = load_metrics(sorted(tmp.rglob("metrics.json"))).runs
    exps = []
    for name, claims in CLAIMS.items():
        labels = list(dict.fromkeys(x for c in claims for x in c.split(" < ")))
        rows = [
            make_row(x, "SR-SOP", paper=None, seeds=range(len(ERRORS[x])), experiment=name) for x in labels
        ]
        exps.append(make_experiment(rows, claims, name=name, paper=None, title=name))
    return build_scorecard(exps, runs), {e.name: build_table(e, runs) for e in exps}, tmp


def _expected():
    """Per tested claim: diff, 95% Welch interval, Holm interval and verdicts, computed here."""
    out = {}
    for c in TESTED:
        a, b = (ERRORS[x] for x in c.split(" < "))
        t = stats.ttest_ind(a, b, equal_var=False)
        wins = sum((x < y) + 0.5 * (x == y) for x in a for y in b) / (len(a) * len(b))
        out[c] = {
            "diff": np.mean(a) - np.mean(b),
            "ci": t.confidence_interval(0.95),
            "p": t.pvalue,
            "a": a,
            "b": b,
            "p_improvement": wins,
        }
    order = sorted(out, key=lambda c: out[c]["p"])
    m, level = len(order), None
    for step, c in enumerate(order):  # Holm's step-down procedure, as textbooks state it
        at = 0.05 / (m - step)
        level = level or (at if out[c]["p"] >= at else None)
        out[c]["holm"] = stats.ttest_ind(out[c]["a"], out[c]["b"], equal_var=False).confidence_interval(
            1 - (level or at)
        )
        direction = "holds" if out[c]["diff"] < 0 else "reversed"
        out[c]["holm_verdict"] = direction if level is None else "inconclusive"
    return out


def _numbers(text: str) -> list[float]:
    return [float(x.replace("−", "-")) for x in re.findall(r"[+\-−]?\d+\.\d+", text)]


class _Cells(HTMLParser):
    """The text of every cell of one table (by id) of an HTML page."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _html_rows(page: str, table_id: str) -> list[list[str]]:
    parser = _Cells(table_id)
    parser.feed(page)
    return parser.rows


def _md_rows(md: str, first_header: str) -> list[list[str]]:
    lines = md.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(f"| {first_header}"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return [rows[0]] + rows[2:]  # without the alignment rule


CLOSE = dict(abs=0.005 + 1e-9)  # two decimals as printed


def _check_scorecard_rows(rows, expected):
    head, body = rows[0], rows[1:]
    col = {h: i for i, h in enumerate(head)}
    assert [r[col["Claim"]] for r in body] == [c for cs in CLAIMS.values() for c in cs]
    for r in body:
        claim = r[col["Claim"]]
        if claim not in expected:
            assert r[col["Holm interval"]] == "—" and "[" not in r[col["Difference [95% CI]"]], claim
            continue
        e = expected[claim]
        diff, holm = _numbers(r[col["Difference [95% CI]"]]), _numbers(r[col["Holm interval"]])
        assert diff == pytest.approx([e["diff"], e["ci"].low, e["ci"].high], **CLOSE), claim
        assert holm == pytest.approx([e["holm"].low, e["holm"].high], **CLOSE)
        assert _numbers(r[col["Ours"]]) == pytest.approx([np.mean(e["a"]), np.mean(e["b"])], **CLOSE)
        assert _numbers(r[col["P(left better)"]]) == pytest.approx([e["p_improvement"]], **CLOSE)
        assert r[col["Verdict (Holm)"]] == e["holm_verdict"]
        assert r[col["Verdict (unadjusted)"]] == (
            "holds" if e["ci"].high < 0 else "reversed" if e["ci"].low > 0 else "inconclusive"
        )
        assert holm[0] <= diff[1]  # [low, high], the Holm interval the wider


def test_scorecard_cells_number_by_number(card_and_tables):
    card = card_and_tables[0]
    expected = _expected()
    assert any(e["holm_verdict"] == "holds" for e in expected.values())
    # one claim holds on its own but not in the family of five: the two verdict columns differ
    assert expected["G < B"]["holm_verdict"] == "inconclusive" and expected["G < B"]["ci"].high < 0
    # the family: every claim tested with an interval, over both experiments
    assert "the 5 claims this scorecard tests with an interval" in render_scorecard_markdown(card)
    _check_scorecard_rows(_md_rows(render_scorecard_markdown(card), "Verdict (Holm)"), expected)
    _check_scorecard_rows(_html_rows(render_scorecard_html(card), "gmsop-scorecard"), expected)
    verdicts = dict(zip(card["claim"], card["verdict_holm"]))
    assert [verdicts[c] for c in CLAIMS["t2"][1:]] == [
        "unstable (1 of 6 seeds failed)",
        "inconclusive (no spread)",
        "not learned",
    ]


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_a_tables_claim_block_number_by_number(card_and_tables, fmt):
    tables = card_and_tables[1]
    expected = _expected()
    for name, table in tables.items():
        if fmt == "md":
            text = render_markdown(table)
            rows = _md_rows(text, "Claim")
        else:
            text = render_html(table)
            rows = _html_rows(text, f"{name}-claims")
        head, body = rows[0], rows[1:]
        col = {h.split(" (")[0]: i for i, h in enumerate(head)}
        assert [r[col["Claim"]] for r in body] == CLAIMS[name]
        for r in body:
            e = expected.get(r[col["Claim"]])
            if e is None:
                assert "[" not in r[col["Difference [95% CI]"]]
                continue
            assert _numbers(r[col["Difference [95% CI]"]]) == pytest.approx(
                [e["diff"], e["ci"].low, e["ci"].high], **CLOSE
            )
            assert _numbers(r[col["Ours"]]) == pytest.approx([np.mean(e["a"]), np.mean(e["b"])], **CLOSE)
        tested = sum(c in expected for c in CLAIMS[name])
        assert (
            f"This table checks {len(CLAIMS[name])} claims and tests {tested} of them, each with a "
            "95% Welch interval"
        ) in text


def test_forest_plot_draws_the_scorecards_values(card_and_tables):
    card = card_and_tables[0]
    fig = plot_forest(card)
    ax = fig.axes[0]
    drawn = {c.get_gid(): c for c in ax.collections}
    tested = card[card["verdict"].isin(["holds", "reversed", "inconclusive"])]
    y = {claim: i for i, claim in enumerate(card["claim"])}
    for gid, low, high in (("ci95", "ci_low", "ci_high"), ("holm", "holm_low", "holm_high")):
        segments = [tuple(map(tuple, s)) for s in drawn[gid].get_segments()]
        assert segments == [((r[low], y[r["claim"]]), (r[high], y[r["claim"]])) for _, r in tested.iterrows()]
    np.testing.assert_allclose(
        drawn["diff"].get_offsets(), np.c_[tested["diff"], [y[c] for c in tested["claim"]]]
    )
    # untested claims with a finite difference: hollow markers, no bar; every verdict written beside
    untested = card[~card["verdict"].isin(["holds", "reversed", "inconclusive"]) & np.isfinite(card["diff"])]
    np.testing.assert_allclose(
        drawn["untested"].get_offsets(), np.c_[untested["diff"], [y[c] for c in untested["claim"]]]
    )
    texts = [t.get_text() for t in ax.texts]
    assert texts == card["verdict_holm"].tolist()
    labels = [f"{c}  ({e})" for c, e in zip(card["claim"], card["experiment"])]
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    # colours follow the Holm verdict
    data = forest_data(card)
    colours = dict(zip(data["verdict_holm"], data["colour"]))
    assert colours["holds"] == "#1a7f37" and colours["not learned"] == "#57606a"


def test_write_scorecard_puts_the_plot_above_the_table(card_and_tables, tmp_path):
    card = card_and_tables[0]
    paths = write_scorecard(card, tmp_path / "scorecard", landing=tmp_path / "landing.html")
    assert {p.name for p in paths} == {
        "scorecard.csv",
        "scorecard.md",
        "scorecard.html",
        "scorecard.svg",
        "scorecard.png",
        "landing.html",
    }
    assert (tmp_path / "scorecard.png").read_bytes().startswith(b"\x89PNG")
    landing = (tmp_path / "landing.html").read_text()
    marks = ('<figure id="gmsop-forest"', "<svg", 'id="gmsop-scorecard"')
    plot, svg, table = (landing.index(x) for x in marks)
    assert plot < svg < table
    assert "<?xml" not in landing and 'style="width:100%;height:auto' in landing
