"""The paper's orderings checked on our runs: parsing, verdicts, tables, and the shipped configs."""
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from gmsop.aggregate import paper_values as pv
from gmsop.aggregate.load import load_runs
from gmsop.aggregate.orderings import check_orderings, parse_ordering, parse_orderings
from gmsop.aggregate.spec import TableSpec
from gmsop.aggregate.tables import build_table, build_table_from_spec
from gmsop.aggregate.writers import render_html, render_markdown
from gmsop.experiments import make_plan
from gmsop.pipeline import table_spec
from result_files import make_metrics, write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "config.yaml", *sorted((ROOT / "workflow/configs").glob("*.yaml"))]
#: Overlays are not configs of their own: each is layered on orderings-synthetic.yaml (as its
#: header's command does), merged as ``snakemake --configfile BASE OVERLAY`` merges them.
OVERLAYS = {p: ROOT / "workflow/configs/orderings-synthetic.yaml" for p in sorted((ROOT / "workflow/configs/overlays").glob("*.yaml"))}


def _load_config(path: Path) -> dict:
    """A shipped config, or an overlay merged onto its base with Snakemake's own merge."""
    from snakemake.utils import update_config

    if path not in OVERLAYS:
        return yaml.safe_load(path.read_text())
    cfg = yaml.safe_load(OVERLAYS[path].read_text())
    update_config(cfg, yaml.safe_load(path.read_text()))
    return cfg


class TestParse:
    def test_labels_with_symbols_and_spaces(self):
        o = parse_ordering("GM-SOP-16-8 + WRN-36-2 < GM-GAP-16-8*", ["GM-SOP-16-8 + WRN-36-2", "GM-GAP-16-8*"])
        assert (o.better, o.worse, str(o)) == ("GM-SOP-16-8 + WRN-36-2", "GM-GAP-16-8*", "GM-SOP-16-8 + WRN-36-2 < GM-GAP-16-8*")

    @pytest.mark.parametrize("text", ["SR-SOP<ResNet-18", "SR-SOP > ResNet-18", "A < B < C", " < B", "A < A"])
    def test_malformed(self, text):
        with pytest.raises(ValueError, match="orderings"):
            parse_ordering(text)

    def test_unknown_label_lists_rows(self):
        with pytest.raises(ValueError, match=r"\['SR-SOB'\].*rows are \['SR-SOP', 'ResNet-18'\]"):
            parse_orderings(["SR-SOB < ResNet-18"], ["SR-SOP", "ResNet-18"], "experiments.table2.orderings")
        with pytest.raises(ValueError, match="list"):
            parse_orderings("SR-SOP < ResNet-18")


class TestVerdicts:
    def _one(self, a, b):
        return check_orderings({"A": a, "B": b}, parse_orderings(["A < B"])).iloc[0]

    def test_clear_win_holds(self):
        r = self._one([40.0, 41.0, 40.5], [50.0, 51.0, 49.0])
        assert r["verdict"] == "holds" and r["diff"] == pytest.approx(-9.5) and r["p_value"] < 0.01
        assert (r["n_better"], r["n_worse"]) == (3, 3)

    def test_small_difference_is_within_noise(self):
        r = self._one([40.0, 44.0, 42.0], [41.0, 45.0, 43.5])
        assert r["verdict"] == "holds, within noise" and r["diff"] < 0 and r["p_value"] > 0.05

    def test_one_seed_cannot_be_tested(self):
        r = self._one([40.0], [50.0])
        assert r["verdict"] == "holds, within noise" and math.isnan(r["p_value"])

    def test_reversed_missing_not_finite(self):
        assert self._one([50.0, 51.0], [40.0, 41.0])["verdict"] == "reversed"
        assert self._one([], [40.0, 41.0])["verdict"] == "missing"
        r = self._one([float("nan"), 40.0], [45.0, 46.0])
        assert r["verdict"] == "not finite" and math.isnan(r["diff"])

    def test_identical_seeds_without_spread(self):
        assert self._one([40.0, 40.0], [41.0, 41.0])["p_value"] == 0.0


def test_table_carries_and_renders_its_orderings(tmp_path):
    for s, (gm, base) in enumerate([(38.0, 49.0), (38.5, 49.5), (39.0, 50.5)]):
        write_json(tmp_path / f"gm/{s}/metrics.json", make_metrics(seed=s, top1=gm))
        write_json(tmp_path / f"base/{s}/metrics.json", make_metrics("ResNet-18-512d", seed=s, top1=base, rep_dim=512))
    runs = load_runs(tmp_path)
    rows = [("ResNet-18-512d", "resnet18"), ("GM-SOP-16-8", "resnet18"), ("SR-SOP", "resnet18")]
    spec = TableSpec.from_config("table2", {"rows": rows, "orderings": ["GM-SOP-16-8 < ResNet-18-512d", "SR-SOP < ResNet-18-512d"]})
    t = build_table_from_spec(runs, None, spec)
    got = {o["claim"]: o for o in t.attrs["orderings"]}
    assert got["GM-SOP-16-8 < ResNet-18-512d"]["verdict"] == "holds"
    assert got["GM-SOP-16-8 < ResNet-18-512d"]["diff"] == pytest.approx(38.5 - (49.0 + 49.5 + 50.5) / 3)
    assert got["SR-SOP < ResNet-18-512d"]["verdict"] == "missing"
    md, page = render_markdown(t), render_html(t)
    assert "| GM-SOP-16-8 < ResNet-18-512d | 38.50 vs 49.67 | -11.17 | 3 / 3 |" in md and "| missing |" in md
    assert 'id="table2-orderings"' in page and "GM-SOP-16-8 &lt; ResNet-18-512d" in page
    with pytest.raises(ValueError, match="not a row of the table"):
        TableSpec.from_config("table2", {"rows": rows, "orderings": ["GM-SOP-16-8 < ResNet-18"]})
    with pytest.raises(ValueError, match="not a row"):
        build_table(runs, None, rows, "table2", orderings=["GM-SOP-16-8 < ResNet-50"])
    assert "orderings" not in render_markdown(build_table(runs, None, rows, "table2"))


def test_plan_refuses_an_ordering_on_an_unknown_row():
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["experiments"]["table2"]["orderings"] = ["GM-SOP-16-8 < ResNet-34"]
    with pytest.raises(ValueError, match=r"experiments\.table2\.orderings\[0\].*'ResNet-34'"):
        make_plan(cfg)


@pytest.mark.parametrize("path", CONFIGS + list(OVERLAYS), ids=lambda p: p.name)
def test_shipped_orderings_are_what_the_paper_reports(path):
    """Every claim in a shipped config holds in the paper's own numbers (no invented claims)."""
    plan = make_plan(_load_config(path))
    checked = 0
    for name, exp in plan.experiments.items():
        spec = table_spec(exp | {"rows": [asdict(r) | {"run": r.run, "bench": r.bench} for r in exp["rows"]]})
        paper_err = {}
        for r in spec["rows"]:
            v = pv.paper_value(spec["paper_table"], r["paper_variant"], r["backbone"], r["paper_tag"]) if spec["paper_table"] else None
            paper_err[r["label"]] = [v.top1_err] if v and v.top1_err is not None else []
        for o in check_orderings(paper_err, parse_orderings(exp["orderings"])).itertuples():
            assert o.diff < 0, f"{path.name} {name}: the paper does not report {o.claim}"
            checked += 1
    assert checked >= 4
