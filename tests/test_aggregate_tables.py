"""Tables and the scorecard from result files: rows selected by planned run id, honest claims
(each verdict built from real files, intervals checked against scipy), paper values only on
the paper's data, ranks and their agreement elsewhere."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gmsop.aggregate.load import load_bench, load_metrics
from gmsop.aggregate.scorecard import build_scorecard, render_scorecard_html, render_scorecard_markdown
from gmsop.aggregate.tables import build_table
from gmsop.aggregate.writers import render_markdown
from planned import make_experiment, make_row
from result_files import make_bench, make_metrics, write_json


def _runs(tmp_path, label, errors, variant=None, classes=16, run=None, **kw):
    """One metrics.json per seed for row ``label`` (run id ``run-<label>``), errors in seed order."""
    for seed, err in enumerate(errors):
        rec = make_metrics(variant or label, seed=seed, top1=err, run_id=run or f"run-{label}", classes=classes, **kw)
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
    assert (first["dataset"], first["classes"], first["train_images"], first["epochs"], first["width"]) == \
        ("synthetic (synthetic)", "16", "16000", "3", "0.25")
    md, page = render_scorecard_markdown(card), render_scorecard_html(card, fragment=True)
    assert "| holds | A < B | table2 |" in md and "6 claims of the paper" in md
    assert page.startswith('<div class="gmsop-scorecard">') and "inconclusive (1 seed)" in page


def test_rows_take_their_runs_by_planned_id_not_by_name_or_path(tmp_path):
    _runs(tmp_path, "SR-SOP", [40.0, 42.0])
    _runs(tmp_path, "SR-SOP (other)", [10.0, 12.0], variant="SR-SOP")  # same variant, another run id
    write_json(tmp_path / "runs" / "by-hand" / "seed0" / "metrics.json", make_metrics("SR-SOP", top1=1.0, run_id=None))
    exp = make_experiment([make_row("SR-SOP", seeds=(0, 1)), make_row("GM-SOP-16-8", seeds=(0, 1))])
    t = build_table(exp, _load(tmp_path)).set_index("method")
    assert t.loc["SR-SOP", "n"] == 2 and t.loc["SR-SOP", "top1_mean"] == pytest.approx(41.0)
    assert t.loc["SR-SOP", "top1_std"] == pytest.approx(np.std([40.0, 42.0], ddof=1))
    assert t.loc["GM-SOP-16-8", "n"] == 0 and np.isnan(t.loc["GM-SOP-16-8", "top1_mean"])  # missing stays missing
    # only the planned seeds count
    one_seed = make_experiment([make_row("SR-SOP", seeds=(1,))])
    assert build_table(one_seed, _load(tmp_path))["top1_mean"].tolist() == [42.0]


def test_duplicate_seed_of_one_row_is_refused(tmp_path):
    _runs(tmp_path, "SR-SOP", [40.0])
    write_json(tmp_path / "runs" / "copy" / "seed0" / "metrics.json", make_metrics("SR-SOP", top1=41.0, run_id="run-SR-SOP"))
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
    assert agreement["n"] == 3 and agreement["tau"] == pytest.approx(tau)
    md = render_markdown(t.reset_index())
    assert "Paper top-1" not in md and "Δ" not in md and "Rank: paper / ours" in md and "Kendall τ = 0.33" in md


def test_paper_delta_only_on_the_papers_dataset_at_full_width(tmp_path):
    _runs(tmp_path, "SR-SOP", [41.0, 42.0], classes=1000)
    _runs(tmp_path, "GM-SOP-16-8", [39.0, 40.0], classes=1000)
    rows = [make_row("SR-SOP", seeds=(0, 1), dataset="imagenet64", dataset_name="imagenet64", width_mult=1.0),
            make_row("GM-SOP-16-8", seeds=(0, 1), dataset="imagenet64", dataset_name="imagenet64", width_mult=0.5)]
    t = build_table(make_experiment(rows), _load(tmp_path)).set_index("method")
    assert t.loc["SR-SOP", "top1_paper"] == 40.32 and t.loc["SR-SOP", "top1_delta"] == pytest.approx(41.5 - 40.32)
    assert np.isnan(t.loc["GM-SOP-16-8", "top1_paper"])  # half width: not the paper's setting


def test_not_learned_rows_are_marked_and_fps_comes_from_planned_benches(tmp_path):
    _runs(tmp_path, "ResNet-18-512d", [80.0, 82.0], rep_dim=512)
    _runs(tmp_path, "GM-GAP-16-8", [30.0, 31.0])
    for label, fps in (("ResNet-18-512d", 400.0), ("GM-GAP-16-8", 200.0)):
        write_json(tmp_path / "bench" / f"bench-{label}.json", make_bench(label, train_img_s=fps, bench_id=f"bench-{label}"))
    write_json(tmp_path / "bench" / "stray.json", make_bench("GM-GAP-16-8", train_img_s=1.0, bench_id="other"))
    exp = make_experiment([make_row("ResNet-18-512d", seeds=(0, 1)), make_row("GM-GAP-16-8", seeds=(0, 1))],
                          ["GM-GAP-16-8 < ResNet-18-512d"], baseline="ResNet-18-512d")
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


def test_aggregation_jobs_import_no_torch():
    """A table, figure or scorecard job loads the plan's rows and result files: no torch (≈1.5 s
    of start-up per job), which `import gmsop` and the plan's classes must not pull in."""
    import subprocess
    import sys

    code = ("import sys, pickle, gmsop, gmsop.pipeline, gmsop.experiments, gmsop.aggregate.tables, "
            "gmsop.aggregate.scorecard, gmsop.aggregate.figures, gmsop.formats; "
            "from planned import make_experiment, make_row; "
            "pickle.loads(pickle.dumps(make_experiment([make_row('SR-SOP')]))); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_paper_architecture_numbers_only_at_full_width(tmp_path):
    """Parameters, dimension and speed describe the net: a width-0.25 row is not the paper's."""
    _runs(tmp_path, "ResNet-18-512d", [40.0], rep_dim=128)
    _runs(tmp_path, "GM-GAP-16-8", [40.0], rep_dim=512, run="full")
    rows = [make_row("ResNet-18-512d", seeds=(0,)), make_row("GM-GAP-16-8", seeds=(0,), run="full", width_mult=1.0)]
    t = build_table(make_experiment(rows), _load(tmp_path)).set_index("method")
    assert np.isnan(t.loc["ResNet-18-512d", "params_paper_m"]) and pd.isna(t.loc["ResNet-18-512d", "dim_paper"])
    assert np.isnan(t.loc["ResNet-18-512d", "fps_paper"])
    assert t.loc["GM-GAP-16-8", "params_paper_m"] == 2.3 and t.loc["GM-GAP-16-8", "dim_paper"] == 512
    assert t.loc["GM-GAP-16-8", "fps_paper"] == 800.0
