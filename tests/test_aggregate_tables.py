"""build_table: arithmetic over seeds, missing rows, relative speed, paper deltas, guards."""
import math

import numpy as np
import pandas as pd
import pytest

from gmsop.aggregate.load import load_bench, load_runs
from gmsop.aggregate.spec import RowSpec, TableSpec
from result_files import make_bench, make_metrics, write_json
from gmsop.aggregate.tables import TABLE_COLUMNS, build_table, build_table_from_spec

GM = [38.0, 38.4, 38.5]
BASE = [49.0, 49.6]
ROWS = [("ResNet-18", "resnet18"), ("ResNet-18-512d", "resnet18"), ("SR-SOP", "resnet18"),
        ("GM-SOP-16-8", "resnet18")]


@pytest.fixture
def results(tmp_path):
    """3 GM-SOP seeds, 2 baseline seeds, one unfinished SR-SOP run, benchmarks for two variants."""
    for s, e in enumerate(GM):
        write_json(tmp_path / f"r/gm/{s}/metrics.json", make_metrics(seed=s, top1=e, top5=e / 2, train_img_s=100.0 + s))
    for s, e in enumerate(BASE):
        write_json(tmp_path / f"r/base/{s}/metrics.json",
                   make_metrics("ResNet-18-512d", seed=s, top1=e, top5=24.0, params=1_300_000, rep_dim=512,
                                train_img_s=400.0))
    write_json(tmp_path / "r/sr/0/metrics.json", make_metrics("SR-SOP", finished=False, params=9_000_000))
    write_json(tmp_path / "b/gm/bench.json", make_bench(train_img_s=120.0))
    write_json(tmp_path / "b/gm2/bench.json", make_bench(train_img_s=130.0))
    write_json(tmp_path / "b/base/bench.json", make_bench("ResNet-18-512d", train_img_s=500.0, params=1_300_000))
    return load_runs(tmp_path / "r"), load_bench(tmp_path / "b")


def _row(df, variant):
    return df.set_index("variant").loc[variant]


class TestArithmetic:
    def test_mean_std_n(self, results):
        t = build_table(*results, ROWS, "table2", baseline="ResNet-18-512d")
        assert list(t.columns) == list(TABLE_COLUMNS)
        gm = _row(t, "GM-SOP-16-8")
        assert gm["n"] == 3 and gm["seeds"] == "0;1;2"
        assert gm["top1_mean"] == pytest.approx(np.mean(GM))
        assert gm["top1_std"] == pytest.approx(np.std(GM, ddof=1))
        assert gm["top5_mean"] == pytest.approx(np.mean(GM) / 2)
        assert gm["params_m"] == pytest.approx(10.35) and gm["dim"] == 8256

    def test_single_seed_has_no_std(self, results):
        runs, bench = results
        one = runs[(runs["variant"] != "GM-SOP-16-8") | (runs["seed"] == 0)]
        gm = _row(build_table(one, bench, ROWS, "table2"), "GM-SOP-16-8")
        assert gm["n"] == 1 and gm["top1_mean"] == 38.0 and math.isnan(gm["top1_std"])

    def test_missing_rows_stay_missing(self, results):
        t = build_table(*results, ROWS, "table2")
        for variant in ("ResNet-18", "SR-SOP"):
            row = _row(t, variant)
            assert row["n"] == 0 and math.isnan(row["top1_mean"]) and math.isnan(row["top1_delta"])
            assert not math.isnan(row["top1_paper"])  # the paper value is still shown
        assert _row(t, "SR-SOP")["n_unfinished"] == 1
        assert list(t["variant"]) == [r[0] for r in ROWS]  # spec order

    def test_nonfinite_run_is_not_skipped(self, results):
        runs, bench = results
        runs = runs.copy()
        runs.loc[(runs["variant"] == "GM-SOP-16-8") & (runs["seed"] == 1), "top1_err"] = np.nan
        gm = _row(build_table(runs, bench, ROWS, "table2"), "GM-SOP-16-8")
        assert gm["n"] == 3 and gm["n_nonfinite"] == 1 and math.isnan(gm["top1_mean"])


class TestSpeedAndPaper:
    def test_relative_fps_from_bench(self, results):
        t = build_table(*results, ROWS, "table2", baseline=("ResNet-18-512d", "resnet18"))
        gm, base = _row(t, "GM-SOP-16-8"), _row(t, "ResNet-18-512d")
        assert gm["fps"] == 125.0  # median of the two benchmark files
        assert base["fps_rel"] == 1.0 and gm["fps_rel"] == pytest.approx(125.0 / 500.0)
        assert (t["fps_source"] == "bench").all()
        # paper speeds, as ratios to the paper's baseline
        assert base["fps_paper"] == 1470.0
        assert _row(t, "SR-SOP")["fps_paper_rel"] == pytest.approx(670.0 / 1470.0)

    def test_fps_from_training_runs(self, results):
        runs, _ = results
        t = build_table(runs, None, ROWS, "table2", baseline="ResNet-18-512d")
        assert _row(t, "GM-SOP-16-8")["fps"] == pytest.approx(101.0)
        assert _row(t, "GM-SOP-16-8")["fps_rel"] == pytest.approx(101.0 / 400.0)
        assert t.attrs["fps_source"] == "train"

    def test_paper_delta(self, results):
        t = build_table(*results, ROWS, "table2")
        gm = _row(t, "GM-SOP-16-8")
        assert gm["top1_paper"] == 38.21
        assert gm["top1_delta"] == pytest.approx(np.mean(GM) - 38.21)
        assert math.isnan(gm["top5_paper"])  # Table 2 prints no top-5
        assert gm["params_paper_m"] == 10.3

    def test_no_paper_table(self, results):
        t = build_table(*results, ROWS, "my_ablation")
        assert t["top1_paper"].isna().all() and t["fps_paper"].isna().all()

    def test_star_tag_and_paper_variant(self, tmp_path):
        write_json(tmp_path / "a/metrics.json", make_metrics("GM-GAP-16-8", tag="star", top1=40.0))
        write_json(tmp_path / "b/metrics.json", make_metrics("GM-GAP-16-8", top1=42.0))
        write_json(tmp_path / "c/metrics.json", make_metrics("GAP-512d", backbone="resnet50", top1=41.0))
        rows = [("GM-GAP-16-8", "resnet18"), ["GM-GAP-16-8", "resnet18", "star"],
                {"variant": "GAP-512d", "backbone": "resnet50", "paper_variant": "ResNet-50-512d"}]
        t = build_table(load_runs(tmp_path), None, rows, "table3")
        assert t["top1_mean"].tolist() == [42.0, 40.0, 41.0]
        assert t["top1_paper"].tolist() == [42.37, 40.03, 41.79]
        assert t["method"].tolist() == ["GM-GAP-16-8", "GM-GAP-16-8*", "GAP-512d"]


class TestGuards:
    def test_mixed_protocols_raise(self, results, tmp_path):
        runs, bench = results
        write_json(tmp_path / "p/metrics.json", make_metrics(seed=7, protocol="paper"))
        both = pd.concat([runs, load_runs(tmp_path / "p")], ignore_index=True)
        with pytest.raises(ValueError, match=r"mix protocols \['official', 'paper'\]"):
            build_table(both, bench, ROWS, "table2")
        t = build_table(both, bench, ROWS, "table2", where={"protocol": "paper"})
        assert _row(t, "GM-SOP-16-8")["n"] == 1

    def test_duplicate_seed_raises(self, results, tmp_path):
        runs, bench = results
        write_json(tmp_path / "d/metrics.json", make_metrics(seed=0, alpha=0.0))
        both = pd.concat([runs, load_runs(tmp_path / "d")], ignore_index=True)
        with pytest.raises(ValueError, match="seed 0 appears 2 times"):
            build_table(both, bench, ROWS, "table2")
        assert _row(build_table(both, bench, ROWS, "table2", where={"hp.alpha": 100.0}), "GM-SOP-16-8")["n"] == 3

    def test_unknown_filter_column(self, results):
        with pytest.raises(ValueError, match="no such column"):
            build_table(*results, ROWS, "table2", where={"hp.nope": 1})

    def test_bad_baseline(self, results):
        with pytest.raises(ValueError, match="matches no row"):
            build_table(*results, ROWS, "table2", baseline="ResNet-50")


class TestSpec:
    def test_from_config(self, results):
        spec = TableSpec.from_config("table2", {
            "title": "T2", "baseline": "ResNet-18-512d", "fps_source": "train",
            "where": {"dataset": "synthetic"},
            "rows": [["ResNet-18-512d", "resnet18"], {"variant": "GM-SOP-16-8", "backbone": "resnet18", "label": "Ours"}],
        })
        assert spec.paper_table == "table2" and spec.rows[1] == RowSpec("GM-SOP-16-8", "resnet18", label="Ours")
        t = build_table_from_spec(*results, spec)
        assert t["method"].tolist() == ["ResNet-18-512d", "Ours"]
        assert t.attrs["title"] == "T2" and t.attrs["baseline"] == "ResNet-18-512d"

    @pytest.mark.parametrize("cfg, message", [
        ({"rows": [["A", "resnet18"]], "colour": "red"}, r"unknown key\(s\) \['colour'\]"),
        ({"title": "x"}, "missing 'rows'"),
        ({"rows": []}, "at least one row"),
        ({"rows": [["A"]]}, "expected \\[variant, backbone\\]"),
        ({"rows": [{"variant": "A", "backbone": "r", "tga": "star"}]}, r"unknown key\(s\) \['tga'\]"),
        ({"rows": [["A", "r"], ["A", "r"]]}, "appears twice"),
        ({"rows": [["A", "r"]], "fps_source": "gpu"}, "fps_source 'gpu'"),
        ({"rows": [["A", "r"]], "paper_table": "table7"}, "paper_table 'table7'"),
    ])
    def test_bad_config(self, cfg, message):
        with pytest.raises(ValueError, match=message):
            TableSpec.from_config("table2", cfg)


def test_where_on_nullable_column_and_parse_table_specs(results):
    from gmsop.aggregate.spec import parse_table_specs

    runs, bench = results  # the unfinished SR-SOP run has epochs_done = <NA>
    specs = parse_table_specs({"t": {"rows": [["SR-SOP", "resnet18"]], "where": {"epochs_done": 3}}})
    t = build_table_from_spec(runs, bench, specs["t"])
    assert t["n"].tolist() == [0] and t["n_unfinished"].tolist() == [0]
