"""Every writer produces parseable output that holds the table's rows; writes are atomic."""

import os
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from planned import make_experiment, make_row
from result_files import make_metrics, write_json

from gmsop import atomic as _atomic
from gmsop.aggregate.load import load_metrics
from gmsop.aggregate.tables import build_table
from gmsop.aggregate.writers import render_html, render_latex, render_markdown, write_table

ROWS = ["ResNet-18-512d", "SR-SOP", "GM-SOP-16-8"]


@pytest.fixture
def table(tmp_path):
    for s, e in enumerate([38.0, 38.4]):
        write_json(tmp_path / f"r/{s}/metrics.json", make_metrics(seed=s, top1=e, run_id="gm"))
    write_json(
        tmp_path / "r/b/metrics.json",
        make_metrics(
            "ResNet-18-512d", top1=49.0, params=1_300_000, rep_dim=512, train_img_s=400.0, run_id="base"
        ),
    )
    rows = [
        make_row("ResNet-18-512d", run="base", dataset_name="imagenet64", width_mult=1.0),
        make_row("SR-SOP"),
        make_row("GM-SOP-16-8", run="gm", dataset_name="imagenet64", width_mult=1.0),
    ]
    return build_table(
        make_experiment(rows, baseline="ResNet-18-512d", title="Table 2 & friends: 100% reproduced_?"),
        load_metrics(tmp_path / "r").runs,
    )


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.cells, self.tables = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "br"):
            self.stack.append(tag)
        self.tables += tag == "table"

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("td", "th"):
            self.cells.append(data)


def test_csv_round_trip(table, tmp_path):
    paths = write_table(table, tmp_path / "out" / "table2")
    back = pd.read_csv(paths["csv"], keep_default_na=True)
    assert list(back.columns) == list(table.columns)
    for col in ("top1_mean", "top1_std", "n", "fps_rel", "top1_paper", "top1_delta"):
        pd.testing.assert_series_equal(back[col], table[col], check_dtype=False, check_names=False)
    assert back.loc[1, "n"] == 0 and pd.isna(back.loc[1, "top1_mean"])  # missing row stays missing


def test_markdown(table):
    md = render_markdown(table)
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(ROWS)
    assert len({line.count("|") for line in lines}) == 1  # same column count everywhere
    assert "38.20 ± 0.28" in md and "**GM-SOP-16-8**" in md
    sr = next(line for line in lines if "SR-SOP" in line)
    assert "—" in sr and "38." not in sr


def test_html_is_self_contained_and_has_rows(table):
    page = render_html(table)
    parser = _Cells()
    parser.feed(page)
    parser.close()
    assert parser.tables == 1 and parser.stack == []
    assert {"ResNet-18-512d", "SR-SOP", "GM-SOP-16-8", "38.20 ± 0.28", "—"} <= set(parser.cells)
    assert "&amp; friends" in page  # title escaped
    assert not re.search(r"<(script|link)\b|src=", page)  # nothing external


def test_latex_booktabs(table):
    tex = render_latex(table)
    for cmd in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", r"\end{table}"):
        assert cmd in tex
    assert tex.count("{") == tex.count("}")
    assert r"100\% reproduced\_?" in tex and r"Table 2 \& friends" in tex
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == len(ROWS) and all(line.endswith(r"\\") for line in body)
    ncols = len(tex.split(r"\begin{tabular}{")[1].split("}")[0])
    assert all(line.count(" & ") == ncols - 1 for line in body)
    assert r"38.20 $\pm$ 0.28" in tex


def test_write_table_makes_all_files_and_no_temp(table, tmp_path):
    out = tmp_path / "nested" / "dir"
    paths = write_table(table, out / "table2")
    assert {p.name for p in paths.values()} == {"table2.csv", "table2.md", "table2.html", "table2.tex"}
    assert sorted(os.listdir(out)) == sorted(p.name for p in paths.values())
    assert all(p.stat().st_size > 0 for p in paths.values())


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "t.csv"
    target.write_text("old\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        _atomic.atomic_write(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["t.csv"]  # temp file cleaned up
