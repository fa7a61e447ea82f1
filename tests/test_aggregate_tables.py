"""Tables and the scorecard from result files: rows selected by planned run id, honest claims
(each verdict built from real files, intervals checked against scipy), paper values only on
the paper's data, ranks and their agreement elsewhere."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from planned import make_experiment, make_row
from result_files import make_bench, make_metrics, write_json
from scipy import stats

from gmsop import paper_values as pv
from gmsop.aggregate.load import load_bench, load_metrics
from gmsop.aggregate.scorecard import build_scorecard, render_scorecard_html, render_scorecard_markdown
from gmsop.aggregate.tables import build_table
from gmsop.aggregate.writers import render_html, render_markdown


def _runs(tmp_path, label, errors, variant=None, classes=16, run=None, **kw):
    """One metrics.json per seed for row ``label`` (run id ``run-<label>``), errors in seed order."""
    for seed, err in enumerate(errors):
        rec = make_metrics(
            variant or label, seed=seed, top1=err, run_id=run or f"run-{label}", classes=classes, **kw
        )
        write_json(tmp_path / "runs" / (run or f"run-{label}") / f"seed{seed}" / "metrics.json", rec)


def _load(tmp_path):
    return load_metrics(sorted((tmp_path / "runs").rglob("metrics.json"))).runs


# Six claims, one per verdict, each made from result files (16 classes: chance 93.75%, 75% of it 70.31%).
VERDICT_CASES = {
    "A < B": ("holds", [30.0, 31.0, 32.5], [40.0, 42.0, 41.0]),
    "C < D": ("reversed", [50.0, 52.0, 51.0], [30.0, 31.0, 29.5]),
    "E < F": ("inconclusive", [40.0, 44.0, 42.5], [41.0, 43.5, 39.0]),
    "G < H": ("inconclusive (1 seed)", [30.0], [40.0, 41.0, 42.0]),
    "I < J": ("not learned", [60.0, 61.0, 62.0], [71.0, 72.0, 73.0]),
    "K < L": ("missing", [30.0, 31.0], []),
    # a failed seed in a row with a good mean (Table 2's GM-SOP-16-8 on the embedded default)
    "M < N": ("unstable (1 of 6 seeds failed)", [30.7, 84.8, 28.2], [40.0, 41.0, 42.0]),
    "O < P": ("inconclusive (no spread)", [40.0, 40.0], [41.0, 41.0]),
}


@pytest.fixture
def verdict_experiment(tmp_path):
    rows = []
    for claim, (_, better, worse) in VERDICT_CASES.items():
        a, b = claim.split(" < ")
        for label, errs in ((a, better), (b, worse)):
            _runs(tmp_path, label, errs, variant="SR-SOP")
            rows.append(make_row(label, "SR-SOP", paper=None))
    return make_experiment(rows, VERDICT_CASES), _load(tmp_path)


def test_each_verdict_from_result_files_with_welch_intervals(verdict_experiment):
    exp, runs = verdict_experiment
    claims = {c["claim"]: c for c in build_table(exp, runs).attrs["claims"]}
    for claim, (verdict, better, worse) in VERDICT_CASES.items():
        c = claims[claim]
        assert c["verdict"] == verdict, claim
        assert (c["n_better"], c["n_worse"]) == (len(better), len(worse))
        if verdict in ("holds", "reversed", "inconclusive"):
            ci = stats.ttest_ind(better, worse, equal_var=False).confidence_interval(0.95)
            assert (c["ci_low"], c["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
            assert c["diff"] == pytest.approx(np.mean(better) - np.mean(worse))
            wins = sum((x < y) + 0.5 * (x == y) for x in better for y in worse)
            assert c["p_improvement"] == pytest.approx(wins / 9)
        else:  # no test is reported for these
            assert np.isnan(c["ci_low"]) and np.isnan(c["ci_high"]) and np.isnan(c["p_improvement"])
    # the cases have unequal spreads, so Student's pooled interval differs: the check above would catch it
    a, b = VERDICT_CASES["A < B"][1:]
    student = stats.ttest_ind(a, b).confidence_interval(0.95)
    assert claims["A < B"]["ci_low"] != pytest.approx(student.low, rel=1e-6)


def test_scorecard_lists_every_claim_with_where_it_was_tested(verdict_experiment, tmp_path):
    exp, runs = verdict_experiment
    card = build_scorecard([exp], runs)
    assert card["claim"].tolist() == list(VERDICT_CASES)
    assert card["verdict"].tolist() == [v for v, _, _ in VERDICT_CASES.values()]
    first = card.iloc[0]
    assert (first["dataset"], first["classes"], first["train_images"], first["epochs"], first["width"]) == (
        "synthetic (synthetic)",
        "16",
        "16000",
        "3",
        "0.25",
    )
    md, page = render_scorecard_markdown(card), render_scorecard_html(card, fragment=True)
    assert "| holds | holds | A < B |" in md and "8 claims of the paper" in md
    assert "Family for Holm's adjustment: the 3 claims this scorecard tests with an interval" in md
    assert page.startswith("<style>") and '<div class="gmsop-scorecard">' in page
    assert "inconclusive (1 seed)" in page
    # the failed seed is named under the table and marked beside the row's mean
    assert "30.7 vs" not in md and "47.90§ vs 41.00" in md and "table2 / M: seed 1 at 84.80" in md
    assert card.attrs["failed_seeds"] == [{"experiment": "table2", "row": "M", "seed": 1, "error": 84.8}]


def test_rows_take_their_runs_by_planned_id_not_by_name_or_path(tmp_path):
    _runs(tmp_path, "SR-SOP", [40.0, 42.0])
    _runs(tmp_path, "SR-SOP (other)", [10.0, 12.0], variant="SR-SOP")  # same variant, another run id
    write_json(
        tmp_path / "runs" / "by-hand" / "seed0" / "metrics.json",
        make_metrics("SR-SOP", top1=1.0, run_id=None),
    )
    exp = make_experiment([make_row("SR-SOP", seeds=(0, 1)), make_row("GM-SOP-16-8", seeds=(0, 1))])
    t = build_table(exp, _load(tmp_path)).set_index("method")
    assert t.loc["SR-SOP", "n"] == 2 and t.loc["SR-SOP", "top1_mean"] == pytest.approx(41.0)
    assert t.loc["SR-SOP", "top1_std"] == pytest.approx(np.std([40.0, 42.0], ddof=1))
    assert t.loc["GM-SOP-16-8", "n"] == 0 and np.isnan(
        t.loc["GM-SOP-16-8", "top1_mean"]
    )  # missing stays missing
    # only the planned seeds count
    one_seed = make_experiment([make_row("SR-SOP", seeds=(1,))])
    assert build_table(one_seed, _load(tmp_path))["top1_mean"].tolist() == [42.0]


def test_duplicate_seed_of_one_row_is_refused(tmp_path):
    _runs(tmp_path, "SR-SOP", [40.0])
    write_json(
        tmp_path / "runs" / "copy" / "seed0" / "metrics.json",
        make_metrics("SR-SOP", top1=41.0, run_id="run-SR-SOP"),
    )
    with pytest.raises(ValueError, match=r"seed 0 appears in 2 files"):
        build_table(make_experiment([make_row("SR-SOP")]), _load(tmp_path))


def test_no_paper_delta_on_synthetic_rows_ranks_and_kendall_instead(tmp_path):
    mine = {"ResNet-18": [60.0, 61.0], "SR-SOP": [40.0, 41.0], "GM-SOP-16-8": [45.0, 44.0]}
    for label, errs in mine.items():
        _runs(tmp_path, label, errs)
    exp = make_experiment([make_row(k, seeds=(0, 1)) for k in mine])
    t = build_table(exp, _load(tmp_path)).set_index("method")
    assert t["top1_paper"].isna().all() and t["top1_delta"].isna().all()
    # paper: ResNet-18 52.00, SR-SOP 40.32, GM-SOP-16-8 38.21 -> ranks 3, 2, 1; ours 3, 1, 2
    assert t["paper_rank"].tolist() == [3, 2, 1] and t["our_rank"].tolist() == [3, 1, 2]
    tau, n = stats.kendalltau([52.00, 40.32, 38.21], [60.5, 40.5, 44.5])
    agreement = t.attrs["rank_agreement"]
    assert agreement["n"] == 3 and agreement["tau"] == pytest.approx(tau) and agreement["left_out"] == []
    md = render_markdown(t.reset_index())
    assert (
        "Paper top-1" not in md and "Δ" not in md and "Rank: paper / ours" in md and "Kendall τ = 0.33" in md
    )
    assert "(dataset synthetic, not imagenet64)" in md


def test_ranks_and_tau_only_over_learned_stable_rows(tmp_path):
    """A row that did not learn and one with a failed seed are left out of the ranks and of τ, and
    the note says how many and why; ranks and τ checked against scipy on the rows kept."""
    mine = {
        "ResNet-18": [60.0, 61.0, 59.0],
        "ResNet-18-512d": [50.0, 52.0, 49.0],
        "SR-SOP": [40.0, 41.0, 39.5],
        "GM-SOP-16-8": [45.0, 44.0, 46.0],
        "Ave-SOP-16": [42.0, 43.0, 41.0],
        "ResNet-18-8256d": [93.5, 93.2, 93.7],  # did not learn (16 classes: 70.31% is 75% of chance)
        "GM-GAP-16-8": [30.7, 84.8, 28.2],
    }  # one failed seed, mean 47.9
    for label, errs in mine.items():
        _runs(tmp_path, label, errs)
    t = build_table(make_experiment([make_row(k) for k in mine]), _load(tmp_path))
    agreement = t.attrs["rank_agreement"]
    assert agreement["left_out"] == [
        ("ResNet-18-8256d", "did not learn"),
        ("GM-GAP-16-8", "1 of 3 seeds failed"),
    ]
    kept = ["ResNet-18", "ResNet-18-512d", "SR-SOP", "GM-SOP-16-8", "Ave-SOP-16"]
    paper = {
        "ResNet-18": 52.00,
        "ResNet-18-512d": 49.08,
        "SR-SOP": 40.32,
        "GM-SOP-16-8": 38.21,
        "Ave-SOP-16": 40.28,
    }
    ours = [np.mean(mine[k]) for k in kept]
    ref = stats.kendalltau([paper[k] for k in kept], ours)
    assert agreement["n"] == 5 and agreement["tau"] == pytest.approx(ref.statistic)
    t = t.set_index("method")
    paper_ranks = stats.rankdata([paper[k] for k in kept], method="min")
    assert t.loc[kept, "paper_rank"].tolist() == paper_ranks.tolist()
    assert t.loc[kept, "our_rank"].tolist() == stats.rankdata(ours, method="min").tolist()
    assert t.loc[["ResNet-18-8256d", "GM-GAP-16-8"], ["paper_rank", "our_rank"]].isna().all().all()
    # all seven rows would give another τ: leaving rows out is what the test checks
    everything = stats.kendalltau(
        [52.00, 49.08, 40.32, 38.21, 40.28, 47.29, 42.37], [np.mean(v) for v in mine.values()]
    )
    assert everything.statistic != pytest.approx(ref.statistic)
    md = render_markdown(t.reset_index())
    assert (
        f"Kendall τ = {ref.statistic:.2f} over 5 rows; 2 rows left out: ResNet-18-8256d (did not learn), "
        "GM-GAP-16-8 (1 of 3 seeds failed)"
    ) in md
    # the failed seed is marked in its row and named in a footnote; the not-learned row is marked °
    cells = {line.split(" | ")[0].strip("| *"): line for line in md.splitlines() if line.startswith("| ")}
    gm, r8 = mine["GM-GAP-16-8"], mine["ResNet-18-8256d"]
    assert f"| {np.mean(gm):.2f} ± {np.std(gm, ddof=1):.2f} § |" in cells["GM-GAP-16-8"]
    assert f"| {np.mean(r8):.2f} ± {np.std(r8, ddof=1):.2f} ° |" in cells["ResNet-18-8256d"]
    assert "GM-GAP-16-8: seed 1 at 84.80" in md
    assert t.loc["GM-GAP-16-8", "failed_seeds"] == "1:84.8" and t.loc["GM-GAP-16-8", "n_failed"] == 1
    assert bool(t.loc["GM-GAP-16-8", "learned"]) and not bool(t.loc["ResNet-18-8256d", "learned"])


PAPER_SETTING = {
    "datasets": {
        "full": {"name": "imagenet64", "root": "in", "options": {"require_full": True}},
        "px32": {"name": "imagenet64", "root": "in", "options": {"size": 32, "require_full": True}},
        "partial": {"name": "imagenet64", "root": "in"},
        "places": {"name": "places365", "root": "pl", "options": {"require_full": True}},
        "places_partial": {"name": "places365", "root": "pl"},
    },
    "defaults": {
        "backbone": "resnet18",
        "protocol": "official",
        "dataset": "full",
        "batch_size": 256,
        "width_mult": 1.0,
        "seeds": [0, 1],
    },
    "schedules": {
        "srsop_text": [[0.15, 20], [0.015, 5], [0.0015, 5], [0.00015, 5], [0.000015, 5]],
        "short": [[0.15, 3]],
        "gap": [[0.075, 50], [0.0075, 15], [0.00075, 10]],
        "places": [[0.1, 25], [0.01, 5], [0.001, 5], [0.0001, 5]],
    },
    "experiments": {
        "table2": {
            "paper": "table2",
            "schedule": "srsop_text",
            "rows": [
                {"variant": "SR-SOP", "label": "full"},
                {"variant": "SR-SOP", "label": "32 px", "dataset": "px32"},
                {"variant": "SR-SOP", "label": "partial download", "dataset": "partial"},
                {"variant": "SR-SOP", "label": "3 epochs", "schedule": "short"},
                {"variant": "SR-SOP", "label": "half width", "width_mult": 0.5},
                # 40 epochs is the text's SR-SOP schedule, but 75 is the GAP baselines'
                {"variant": "ResNet-18", "label": "ResNet-18 at 40 epochs"},
                {"variant": "ResNet-18", "label": "ResNet-18 at 75", "schedule": "gap"},
            ],
        },
        "table4": {
            "paper": "table4",
            "schedule": "places",
            "rows": [
                {"variant": "SR-SOP", "label": "places full", "dataset": "places"},
                {"variant": "SR-SOP", "label": "places partial", "dataset": "places_partial"},
            ],
        },
    },
}

#: Each case's gaps from the paper's setting (empty: in the paper's setting in full).
SETTING_GAPS = {
    "full": (),
    "32 px": ("size 32, not 64",),
    "partial download": ("require_full False, not True",),
    "3 epochs": ("3 epochs, not 40",),
    "half width": ("width 0.5, not 1",),
    "ResNet-18 at 40 epochs": ("40 epochs, not 75",),
    "ResNet-18 at 75": (),
    "places full": (),
    "places partial": ("require_full False, not True",),
}


def test_paper_error_only_in_the_papers_setting_in_full(tmp_path):
    """Case by case: the dataset's input size, the complete download, the width and the schedule's
    length each keep the published error and Δ out; the row decides (Row.paper_setting_gaps)."""
    from gmsop.experiments import make_plan

    plan = make_plan(PAPER_SETTING)
    for exp in plan.experiments.values():
        for row in exp.rows:
            assert row.paper_setting_gaps(pv.TABLE_DATASETS[exp.paper]) == SETTING_GAPS[row.label], row.label
            for seed, err in ((0, 41.0), (1, 42.0)):
                write_json(
                    tmp_path / "runs" / row.run / f"seed{seed}" / "metrics.json",
                    make_metrics(row.variant, seed=seed, top1=err, top5=20.0, run_id=row.run, classes=1000),
                )
    runs = _load(tmp_path)
    t2 = build_table(plan.experiments["table2"], runs).set_index("method")
    assert t2.loc["full", "top1_paper"] == 40.32
    assert t2.loc["full", "top1_delta"] == pytest.approx(41.5 - 40.32)
    assert t2.loc["ResNet-18 at 75", "top1_paper"] == 52.00
    others = [k for k, gaps in SETTING_GAPS.items() if gaps and k in t2.index]
    assert t2.loc[others, "top1_paper"].isna().all() and t2.loc[others, "top1_delta"].isna().all()
    md = render_markdown(t2.reset_index())
    assert (
        "32 px (size 32, not 64); partial download (require_full False, not True); "
        "3 epochs (3 epochs, not 40)"
    ) in md
    t4 = build_table(plan.experiments["table4"], runs).set_index("method")
    published = pv.paper_value("table4", "SR-SOP", "resnet18")
    assert (t4.loc["places full", "top1_paper"], t4.loc["places full", "top5_paper"]) == (
        published.top1_err,
        published.top5_err,
    )
    assert np.isnan(t4.loc["places partial", "top1_paper"])


@pytest.mark.parametrize("name", ["paper-imagenet64.yaml", "paper-places365.yaml"])
def test_every_row_of_the_paper_configs_is_in_the_papers_setting(name):
    import yaml

    from gmsop.experiments import make_plan

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "configs" / name).read_text())
    checked = 0
    for exp in make_plan(cfg).experiments.values():
        dataset = pv.TABLE_DATASETS.get(exp.paper) or cfg["datasets"][next(iter(cfg["datasets"]))]["name"]
        for row in exp.rows:
            assert row.paper_setting_gaps(dataset) == (), (exp.name, row.label)
            checked += 1
    assert checked >= 6


def test_rule_row_without_top5_shows_its_top1(tmp_path):
    """A rule row (README's example: no top-5) with a different error per seed: its top-1 is the
    mean and std of both seeds, bold as the best row; top-5 counts its own non-finite values."""
    from gmsop.formats import rule_metrics

    for seed, err in ((0, 21.0), (1, 24.0)):
        write_json(
            tmp_path / "runs" / "rule" / f"seed{seed}" / "metrics.json",
            rule_metrics("my_rule", seed, err, None, dataset="synthetic", num_classes=16, train_size=1280),
        )
    _runs(tmp_path, "SR-SOP", [30.0, 31.0])
    rows = [
        make_row("SR-SOP", seeds=(0, 1)),
        make_row("My rule", run="rule:my_rule", seeds=(0, 1), paper=None),
    ]
    t = build_table(make_experiment(rows), _load(tmp_path))
    rule = t.set_index("method").loc["My rule"]
    assert rule["top1_mean"] == 22.5 and rule["top1_std"] == pytest.approx(np.std([21.0, 24.0], ddof=1))
    assert (rule["top1_nonfinite"], rule["top5_nonfinite"]) == (0, 2)
    md = render_markdown(t)
    line = next(x for x in md.splitlines() if x.startswith("| **My rule**"))
    assert "| **22.50 ± 2.12** | — |" in line and "non-finite" not in md
    page = render_html(t)
    assert '<td class="r best">22.50 ± 2.12</td><td class="r missing">—</td>' in page


def test_a_diverged_top5_is_counted_in_its_own_column(tmp_path):
    for seed, (t1, t5) in enumerate(((40.0, 20.0), (42.0, float("nan")))):
        write_json(
            tmp_path / "runs" / "run-SR-SOP" / f"seed{seed}" / "metrics.json",
            make_metrics("SR-SOP", seed=seed, top1=t1, top5=t5, run_id="run-SR-SOP"),
        )
    t = build_table(make_experiment([make_row("SR-SOP", seeds=(0, 1))]), _load(tmp_path))
    assert (t.loc[0, "top1_nonfinite"], t.loc[0, "top5_nonfinite"]) == (0, 1)
    md = render_markdown(t)
    assert "| **41.00 ± 1.41** | non-finite in 1 of 2 runs |" in md


def test_not_learned_rows_are_marked_and_fps_comes_from_planned_benches(tmp_path):
    _runs(tmp_path, "ResNet-18-512d", [80.0, 82.0], rep_dim=512)
    _runs(tmp_path, "GM-GAP-16-8", [30.0, 31.0])
    for label, fps in (("ResNet-18-512d", 400.0), ("GM-GAP-16-8", 200.0)):
        write_json(
            tmp_path / "bench" / f"bench-{label}.json",
            make_bench(label, train_img_s=fps, bench_id=f"bench-{label}"),
        )
    write_json(
        tmp_path / "bench" / "stray.json", make_bench("GM-GAP-16-8", train_img_s=1.0, bench_id="other")
    )
    exp = make_experiment(
        [make_row("ResNet-18-512d", seeds=(0, 1)), make_row("GM-GAP-16-8", seeds=(0, 1))],
        ["GM-GAP-16-8 < ResNet-18-512d"],
        baseline="ResNet-18-512d",
    )
    bench = load_bench(sorted((tmp_path / "bench").glob("*.json")))
    t = build_table(exp, _load(tmp_path), bench)
    assert t["learned"].tolist() == [False, True]
    assert t["fps"].tolist() == [400.0, 200.0] and t["fps_rel"].tolist() == [1.0, 0.5]
    assert t.attrs["claims"][0]["verdict"] == "not learned"
    md = render_markdown(t)
    assert "81.00 ± 1.41 °" in md and "did not learn" in md and "1 not learned" in md


def test_table_columns_are_stable(tmp_path):
    _runs(tmp_path, "SR-SOP", [40.0])
    t = build_table(make_experiment([make_row("SR-SOP", seeds=(0,))]), _load(tmp_path))
    assert pd.isna(t.loc[0, "top1_std"]) and t.loc[0, "n"] == 1
    assert t.loc[0, "classes"] == 16 and bool(t.loc[0, "learned"])


def test_paper_architecture_numbers_only_at_full_width(tmp_path):
    """Parameters, dimension and speed describe the net: a width-0.25 row is not the paper's."""
    _runs(tmp_path, "ResNet-18-512d", [40.0], rep_dim=128)
    _runs(tmp_path, "GM-GAP-16-8", [40.0], rep_dim=512, run="full")
    rows = [
        make_row("ResNet-18-512d", seeds=(0,)),
        make_row("GM-GAP-16-8", seeds=(0,), run="full", width_mult=1.0),
    ]
    t = build_table(make_experiment(rows), _load(tmp_path)).set_index("method")
    assert np.isnan(t.loc["ResNet-18-512d", "params_paper_m"]) and pd.isna(
        t.loc["ResNet-18-512d", "dim_paper"]
    )
    assert np.isnan(t.loc["ResNet-18-512d", "fps_paper"])
    assert t.loc["GM-GAP-16-8", "params_paper_m"] == 2.3 and t.loc["GM-GAP-16-8", "dim_paper"] == 512
    assert t.loc["GM-GAP-16-8", "fps_paper"] == 800.0
