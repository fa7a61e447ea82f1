"""Figures draw exactly the numbers of the planned rows' result files.

Real metrics.json / bench.json files are written, loaded with gmsop.aggregate.load, and the
values each figure plots (bar heights, line data) are compared with numbers computed here
directly from the records written, without going through the loaders or the figure module.
Decoy files (another run id, a seed the row does not ask for, a run trained by hand) carry
outlandish numbers, so selecting by anything but the row's run id and seeds would show.
"""

import dataclasses
import statistics
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from result_files import make_run_bench, make_run_metrics, write_json

from gmsop.aggregate.figures import (
    alpha_data,
    curves_data,
    grid_data,
    plot_alpha_sweep,
    plot_nk_grid,
    plot_routing,
    plot_training_curves,
    routing_data,
    save_figure,
)
from gmsop.aggregate.load import load_bench, load_metrics
from gmsop.experiments import Experiment, Row

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEEDS = (0, 1, 2)
ALPHAS = (0.0, 1.0, 100.0)
GRID = ((8, 2), (16, 2), (8, 8), (16, 8))


def _row(exp, i, label, run, variant, *, seeds=SEEDS, num_experts=None, k=None, alpha=None, bench=None):
    return Row(
        experiment=exp,
        index=i,
        label=label,
        run=run,
        bench=bench or f"bench-{run}",
        seeds=tuple(seeds),
        variant=variant,
        display=variant,
        backbone="resnet18",
        protocol="official",
        dataset="tiny",
        dataset_name="synthetic",
        width_mult=1.0,
        settings={},
        paper=variant,
        num_experts=num_experts,
        k=k,
        alpha=alpha,
    )


def _experiment(name, kind, rows, **kw):
    return Experiment(
        name=name,
        kind=kind,
        title=name.upper(),
        paper=None,
        claims=(),
        rows=tuple(rows),
        baseline=kw.pop("baseline", None),
        **kw,
    )


def _alpha_run(a):
    return f"gm-gap-16-8_alpha{a:g}"


ALPHA_EXP = _experiment(
    "fig2",
    "alpha",
    [
        _row("fig2", i, f"alpha={a:g}", _alpha_run(a), "GM-GAP-16-8", num_experts=16, k=8, alpha=a)
        for i, a in enumerate(ALPHAS)
    ],
    counts_alphas=(0.0, 100.0),
)

BASE = _row("fig3", 0, "ResNet-18-512d", "resnet-18-512d_base", "ResNet-18-512d", seeds=(0, 1))
GRID_EXP = _experiment(
    "fig3",
    "grid",
    [BASE]
    + [
        _row(
            "fig3",
            i + 1,
            f"N={n}, K={k}",
            f"gm-gap-{n}-{k}_grid",
            f"GM-GAP-{n}-{k}",
            seeds=(0, 1),
            num_experts=n,
            k=k,
        )
        for i, (n, k) in enumerate(GRID)
    ],
    baseline="ResNet-18-512d",
    family="GM-GAP",
)


def _counts(alpha, seed):
    """Per-component counts of a run's LAST epoch: skewed without balance loss, near-even with it;
    the order of the components differs between seeds (component ids mean nothing across runs)."""
    rng = np.random.default_rng(int(alpha) * 10 + seed)
    base = (
        [1000 - 60 * i - 7 * seed for i in range(16)]
        if alpha == 0
        else [200 + 3 * i + seed for i in range(16)]
    )
    return [float(c) for c in rng.permutation(base)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(metrics frames, bench frame, the records written as (kind, record))."""
    root = tmp_path_factory.mktemp("figs")
    written = []

    def metrics(path, *args, **kw):
        rec = make_run_metrics(*args, **kw)
        written.append(rec)
        write_json(root / "r" / path / "metrics.json", rec)
        return rec

    def bench(path, *args, **kw):
        rec = make_run_bench(*args, **kw)
        written.append(rec)
        write_json(root / "b" / path / "bench.json", rec)

    for a in ALPHAS:
        for seed in SEEDS:
            unfinished = a == 1.0 and seed == 2  # in progress: in the curves, not in the error
            rec = metrics(
                f"a{a:g}/{seed}",
                _alpha_run(a),
                "GM-GAP-16-8",
                seed=seed,
                alpha=a,
                finished=not unfinished,
                top1=45.0 - 2 * (a > 0) - 0.3 * seed + 0.1 * a / 100,
                routing=_counts(a, seed),
                params=2_000_000,
                rep_dim=512,
            )
            for ep in rec["epochs"][:-1]:  # earlier epochs route differently: only the last one counts
                ep["routing_counts"] = [1.0] * 16
                ep["importance"] = [0.5] * 16
            write_json(root / "r" / f"a{a:g}/{seed}" / "metrics.json", rec)
    # decoys: same variant and alpha, but not the rows' (run id, seed)
    metrics(
        "decoy/other-id",
        "gm-gap-16-8_elsewhere",
        "GM-GAP-16-8",
        seed=0,
        alpha=0.0,
        top1=99.0,
        routing=[5000.0] * 16,
        params=2_000_000,
        rep_dim=512,
    )
    metrics(
        "decoy/by-hand",
        None,
        "GM-GAP-16-8",
        seed=1,
        alpha=100.0,
        top1=1.0,
        routing=[1.0] * 16,
        params=2_000_000,
        rep_dim=512,
    )
    metrics(
        "decoy/seed7",
        _alpha_run(0.0),
        "GM-GAP-16-8",
        seed=7,
        alpha=0.0,
        top1=99.0,
        routing=[9000.0] * 16,
        params=2_000_000,
        rep_dim=512,
    )

    for seed in (0, 1):
        metrics(
            f"base/{seed}",
            BASE.run,
            "ResNet-18-512d",
            seed=seed,
            top1=49.0 + seed,
            train_img_s=1500.0 + 10 * seed,
            params=1_300_000,
            rep_dim=512,
        )
        for n, k in GRID:
            metrics(
                f"nk{n}-{k}/{seed}",
                f"gm-gap-{n}-{k}_grid",
                f"GM-GAP-{n}-{k}",
                seed=seed,
                top1=44.0 - n / 8 - k / 8 + 0.7 * seed,
                train_img_s=800.0 / n + seed,
                params=2_000_000,
                rep_dim=512,
            )
    # three benchmarks a row, median != mean, and not proportional between rows (so a ratio of
    # means differs from the ratio of medians)
    for j, (base_fps, grid_fps) in enumerate(((150.0, 100.0), (170.0, 40.0), (100.0, 90.0))):
        bench(f"base/{j}", BASE.bench, "ResNet-18-512d", train_img_s=base_fps, params=1_300_000)
        for n, k in GRID:
            bench(
                f"nk{n}-{k}/{j}",
                f"bench-gm-gap-{n}-{k}_grid",
                f"GM-GAP-{n}-{k}",
                train_img_s=grid_fps * 8 / n / k**0.5,
            )
    bench("decoy", "bench-elsewhere", "GM-GAP-8-2", train_img_s=1e6)
    return load_metrics(root / "r"), load_bench(root / "b"), written


# --- independent expectations, straight from the records ---------------------------------------


def _records(written, run, seeds, finished=False):
    return [
        r
        for r in written
        if "seed" in r
        and r["run"]
        and r["run"]["id"] == run
        and r["seed"] in seeds
        and (r["final"] is not None or not finished)
    ]


def _benches(written, bench_id):
    return [r["train_img_s"] for r in written if "seed" not in r and r["run"] and r["run"]["id"] == bench_id]


def _mean_error(written, row):
    return statistics.mean(
        r["final"]["top1_err"] for r in _records(written, row.run, row.seeds, finished=True)
    )


def _expected_ranked_counts(written, row):
    """Mean over the row's runs of the last epoch's counts, sorted descending within each run."""
    ranked = [
        sorted(r["epochs"][-1]["routing_counts"], reverse=True) for r in _records(written, row.run, row.seeds)
    ]
    return np.mean(ranked, axis=0)


def _check_saved(fig, stem):
    svg, png = save_figure(fig, [stem.with_name(stem.name + x) for x in (".svg", ".png")])
    assert svg.suffix == ".svg" and png.suffix == ".png"
    assert ET.parse(svg).getroot().tag.endswith("svg")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert not [p for p in stem.parent.iterdir() if p.name.endswith(".tmp")]


# --- Figure 2 (left) ---------------------------------------------------------------------------


def test_routing_bars_are_the_ranked_means_of_the_files(data, tmp_path):
    metrics, _, written = data
    fig = plot_routing(ALPHA_EXP, metrics.routing)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 2  # alpha = 0 and alpha = 100, in counts_alphas order
    for container, alpha in zip(bars, (0.0, 100.0)):
        row = ALPHA_EXP.row(f"alpha={alpha:g}")
        expected = _expected_ranked_counts(written, row)
        heights = np.array([p.get_height() for p in container.patches])
        centers = np.array([p.get_x() + p.get_width() / 2 for p in container.patches])
        np.testing.assert_allclose(heights, expected)
        assert np.all(np.diff(heights) < 0), "rank 1 must be the most loaded component"
        np.testing.assert_allclose(np.round(centers), np.arange(1, 17))
        # the ranking matters: averaging by component index (or ascending) would draw other bars
        by_index = np.mean(
            [r["epochs"][-1]["routing_counts"] for r in _records(written, row.run, row.seeds)], axis=0
        )
        assert not np.allclose(heights, by_index)
        assert not np.allclose(heights, np.sort(expected))
        assert f"n={len(row.seeds)}" in container.get_label()
    assert "Figure 2 (left)" in ax.get_title() and "ResNet-18" in ax.get_title()
    _check_saved(fig, tmp_path / "fig2_left")


def test_routing_data_has_mean_and_std_per_alpha_and_rank(data):
    metrics, _, written = data
    df = routing_data(ALPHA_EXP, metrics.routing)
    assert list(df.columns) == ["label", "alpha", "rank", "count_mean", "count_std", "n", "seeds"]
    assert (
        sorted(df["alpha"].unique()) == [0.0, 100.0] and set(df["n"]) == {3} and set(df["seeds"]) == {"0;1;2"}
    )
    row = ALPHA_EXP.row("alpha=0")
    ranked = [
        sorted(r["epochs"][-1]["routing_counts"], reverse=True) for r in _records(written, row.run, row.seeds)
    ]
    sub = df[df["alpha"] == 0.0].sort_values("rank")
    np.testing.assert_allclose(sub["count_std"], np.std(ranked, axis=0, ddof=1))


def test_routing_errors(data):
    metrics, _, _ = data
    missing = _experiment(
        "fig2",
        "alpha",
        [
            _row("fig2", 0, "alpha=0", "never-trained", "GM-GAP-16-8", num_experts=16, k=8, alpha=0.0),
            ALPHA_EXP.row("alpha=100"),
        ],
        counts_alphas=(0.0, 100.0),
    )
    with pytest.raises(ValueError, match="row 'alpha=0' .*no routing counts"):
        plot_routing(missing, metrics.routing)
    with pytest.raises(ValueError, match="counts alpha 1000 matches 0 rows"):
        routing_data(
            _experiment("fig2", "alpha", ALPHA_EXP.rows, counts_alphas=(0.0, 1000.0)), metrics.routing
        )
    with pytest.raises(ValueError, match="no counts_alphas"):
        routing_data(_experiment("fig2", "alpha", ALPHA_EXP.rows), metrics.routing)


def test_routing_refuses_two_files_for_one_seed(data, tmp_path):
    metrics, _, _ = data
    rec = make_run_metrics(_alpha_run(0.0), "GM-GAP-16-8", seed=0, alpha=0.0, routing=[3.0] * 16)
    write_json(tmp_path / "copy/metrics.json", rec)
    routing = pd.concat([metrics.routing, load_metrics(tmp_path).routing], ignore_index=True)
    with pytest.raises(ValueError, match="seed 0 appears in 2 files"):
        routing_data(ALPHA_EXP, routing)


# --- Figure 2 (right) --------------------------------------------------------------------------


def test_alpha_sweep_line_is_the_mean_error_per_alpha(data, tmp_path):
    metrics, _, written = data
    fig = plot_alpha_sweep(ALPHA_EXP, metrics.runs)
    ax = fig.axes[0]
    (eb,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    line = eb.lines[0]
    np.testing.assert_allclose(line.get_xdata(), ALPHAS)
    np.testing.assert_allclose(line.get_ydata(), [_mean_error(written, r) for r in ALPHA_EXP.rows])
    # single seeds as dots: every finished run of the rows, nothing else (no decoys, no unfinished run)
    dots = ax.collections[0].get_offsets()
    expected = sorted(
        (row.alpha, r["final"]["top1_err"])
        for row in ALPHA_EXP.rows
        for r in _records(written, row.run, row.seeds, finished=True)
    )
    np.testing.assert_allclose(sorted(map(tuple, np.asarray(dots))), expected)
    assert len(dots) == 8
    assert ax.get_xscale() == "symlog" and "(%)" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "100"]
    # the paper's point only beside rows on the paper's own data at full width: not on synthetic
    assert "paper, Table 2 (α = 100)" not in [t.get_text() for t in ax.get_legend().get_texts()]
    # in the paper's setting in full: its dataset, complete, at 64 px, full width, the full schedule
    paper_setting = {"data": {"options": {"size": 64, "require_full": True}}, "schedule": [[0.075, 75]]}
    on_paper = dataclasses.replace(
        ALPHA_EXP,
        rows=tuple(
            dataclasses.replace(r, dataset_name="imagenet64", settings=paper_setting, schedule_family="gap")
            for r in ALPHA_EXP.rows
        ),
    )
    legend = plot_alpha_sweep(on_paper, metrics.runs).axes[0].get_legend().get_texts()
    assert "paper, Table 2 (α = 100)" in [t.get_text() for t in legend]
    at_32px = {**paper_setting, "data": {"options": {"size": 32, "require_full": True}}}
    at_32px = dataclasses.replace(
        on_paper, rows=tuple(dataclasses.replace(r, settings=at_32px) for r in on_paper.rows)
    )
    legend = plot_alpha_sweep(at_32px, metrics.runs).axes[0].get_legend().get_texts()
    assert "paper, Table 2 (α = 100)" not in [t.get_text() for t in legend]
    df = alpha_data(ALPHA_EXP, metrics.runs)
    assert df["n"].tolist() == [3, 2, 3] and df["seeds"].tolist() == ["0;1;2", "0;1", "0;1;2"]
    _check_saved(fig, tmp_path / "fig2_right")


def test_alpha_sweep_without_finished_runs_names_the_row(data):
    metrics, _, _ = data
    exp = _experiment(
        "fig2",
        "alpha",
        [
            ALPHA_EXP.row("alpha=0"),
            _row(
                "fig2",
                1,
                "alpha=1 (seed 2 only)",
                _alpha_run(1.0),
                "GM-GAP-16-8",
                seeds=(2,),
                num_experts=16,
                k=8,
                alpha=1.0,
            ),
        ],
    )
    with pytest.raises(ValueError, match=r"row 'alpha=1 \(seed 2 only\)' .*no finished runs"):
        plot_alpha_sweep(exp, metrics.runs)


# --- Figure 3 ----------------------------------------------------------------------------------


def test_nk_grid_plots_errors_and_bench_speeds_of_the_rows(data, tmp_path):
    metrics, bench, written = data
    fig = plot_nk_grid(GRID_EXP, metrics.runs, bench)
    err_ax, fps_ax = fig.axes
    base_speed = statistics.median(_benches(written, BASE.bench))
    assert base_speed == 150.0
    for k in (2, 8):
        rows = sorted((r for r in GRID_EXP.rows if r.k == k), key=lambda r: r.num_experts)
        (eb,) = [
            c for c in err_ax.containers if isinstance(c, ErrorbarContainer) and c.get_label() == f"K = {k}"
        ]
        np.testing.assert_allclose(eb.lines[0].get_xdata(), [r.num_experts for r in rows])
        np.testing.assert_allclose(eb.lines[0].get_ydata(), [_mean_error(written, r) for r in rows])
        (line,) = [ln for ln in fps_ax.get_lines() if ln.get_label() == f"K = {k}"]
        np.testing.assert_allclose(line.get_xdata(), [r.num_experts for r in rows])
        np.testing.assert_allclose(
            line.get_ydata(), [statistics.median(_benches(written, r.bench)) / base_speed for r in rows]
        )
    base_line = [ln for ln in err_ax.get_lines() if ln.get_label() == "ResNet-18-512d (ours)"]
    np.testing.assert_allclose(base_line[0].get_ydata(), [_mean_error(written, BASE)] * 2)
    assert "relative to ResNet-18-512d" in fps_ax.get_ylabel() and "benchmark" in fps_ax.get_title()
    assert "GM-GAP" in fig._suptitle.get_text()
    _check_saved(fig, tmp_path / "fig3")


def test_nk_grid_falls_back_to_the_runs_speed_when_a_row_has_no_benchmark(data):
    metrics, bench, written = data
    some = bench[bench["bench_id"] != "bench-gm-gap-16-8_grid"]
    df = grid_data(GRID_EXP, metrics.runs, some)
    assert df.attrs["fps_source"] == "train" and df.attrs["relative"]

    def run_speed(row):
        return statistics.mean(r["final"]["train_img_s"] for r in _records(written, row.run, row.seeds, True))

    for _, rec in df.iterrows():
        row = GRID_EXP.row(rec["label"])
        assert (rec["N"], rec["K"]) == (row.num_experts, row.k)
        assert rec["fps"] == pytest.approx(run_speed(row))
        assert rec["speed"] == pytest.approx(run_speed(row) / run_speed(BASE))
    # without a baseline row the speed stays in images/s
    no_base = _experiment("fig3", "grid", GRID_EXP.rows[1:], family="GM-GAP")
    df = grid_data(no_base, metrics.runs, bench)
    assert not df.attrs["relative"] and (df["speed"] == df["fps"]).all()


def test_nk_grid_lists_absent_rows_and_refuses_no_runs_at_all(data):
    metrics, bench, _ = data
    extra = _row(
        "fig3", 5, "N=32, K=8", "gm-gap-32-8_never", "GM-GAP-32-8", seeds=(0, 1), num_experts=32, k=8
    )
    exp = _experiment("fig3", "grid", GRID_EXP.rows + (extra,), baseline="ResNet-18-512d", family="GM-GAP")
    fig = plot_nk_grid(exp, metrics.runs, bench)
    assert any("no runs yet: N=32, K=8" in t.get_text() for t in fig.texts)
    assert grid_data(exp, metrics.runs, bench).attrs["fps_source"] == "train"  # N=32 has no benchmark
    with pytest.raises(ValueError, match="no finished runs for any of the rows"):
        grid_data(_experiment("fig3", "grid", [extra]), metrics.runs, bench)


# --- training curves ---------------------------------------------------------------------------


def test_training_curves_plot_the_mean_per_epoch(data, tmp_path):
    metrics, _, written = data
    absent = _row("t2", 3, "SR-SOP", "sr-sop_never", "SR-SOP", seeds=(0,))
    exp = _experiment("t2", "table", [BASE, GRID_EXP.row("N=16, K=8"), ALPHA_EXP.row("alpha=1"), absent])
    fig = plot_training_curves(exp, metrics.epochs, title="Table 2 runs")
    ax_v, ax_l = fig.axes
    labels = [t.get_text() for t in ax_v.get_legend().get_texts()]
    assert labels == ["ResNet-18-512d (n=2)", "N=16, K=8 (n=2)", "alpha=1 (n=3)"]
    for row, label in zip(exp.rows, labels):
        recs = _records(written, row.run, row.seeds)
        epochs = sorted({e["epoch"] for r in recs for e in r["epochs"]})
        for ax, key in ((ax_v, "val_top1_err"), (ax_l, "train_loss")):
            expected = [
                statistics.mean(e[key] for r in recs for e in r["epochs"] if e["epoch"] == ep)
                for ep in epochs
            ]
            (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
            np.testing.assert_allclose(line.get_xdata(), epochs)
            np.testing.assert_allclose(line.get_ydata(), expected)
    df = curves_data(exp, metrics.epochs)
    assert df.attrs["absent"] == ["SR-SOP"]
    assert df[df["label"] == "alpha=1"]["n"].tolist() == [3, 2, 2]  # seed 2 is still in its first epoch
    assert any("no runs yet: SR-SOP" in t.get_text() for t in fig.texts)
    assert fig._suptitle.get_text() == "Table 2 runs"
    _check_saved(fig, tmp_path / "curves")
    with pytest.raises(ValueError, match=r"no epochs for any of the rows \['SR-SOP'\]"):
        plot_training_curves(_experiment("t2", "table", [absent]), metrics.epochs)


def test_save_figure_rejects_unknown_format(data, tmp_path):
    metrics, _, _ = data
    fig = plot_alpha_sweep(ALPHA_EXP, metrics.runs)
    with pytest.raises(ValueError, match="must end in one of"):
        save_figure(fig, [tmp_path / "x.jpeg"])
