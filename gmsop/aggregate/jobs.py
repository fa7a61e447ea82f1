"""What the workflow's table, figure and scorecard jobs do, from result file paths and the plan's
experiments (the Snakemake scripts only call these)."""

from __future__ import annotations

from pathlib import Path

from gmsop.aggregate import figures
from gmsop.aggregate.load import load_bench, load_metrics
from gmsop.aggregate.scorecard import build_scorecard, write_scorecard
from gmsop.aggregate.tables import build_table
from gmsop.aggregate.writers import write_table
from gmsop.formats import bench_files


def load_results(runs: list[str], benches: list[str] | None = None):
    """The frames of ``runs`` (metrics.json paths) and ``benches`` (bench.json files or folders)."""
    files = bench_files(benches or [])
    return load_metrics([Path(p) for p in runs]), load_bench(files) if files else None


def make_table(experiment, runs: list[str], benches: list[str], stem: str | Path):
    """Write ``stem``.{csv,md,html,tex} for one planned experiment (gmsop.experiments.Experiment)."""
    data, bench = load_results(runs, benches)
    table = build_table(experiment, data.runs, bench)
    write_table(table, str(stem))
    return table


def make_scorecard(experiments, runs: list[str], stem: str | Path, landing: str | Path | None = None):
    """Write ``stem``.{csv,md,html,svg,png} (and the landing fragment): every claim, Holm-adjusted."""
    card = build_scorecard(experiments, load_results(runs)[0].runs)
    write_scorecard(card, stem, landing)
    return card


FIGURES = {
    "curves": lambda e, d, b: figures.plot_training_curves(e, d.epochs, title=f"Training curves: {e.title}"),
    "alpha_counts": lambda e, d, b: figures.plot_routing(e, d.routing),
    "alpha_error": lambda e, d, b: figures.plot_alpha_sweep(e, d.runs),
    "grid": lambda e, d, b: figures.plot_nk_grid(e, d.runs, b),
    "class_routing": lambda e, d, b: figures.plot_class_routing(e, d.class_routing),
}


def make_figure(kind: str, experiment, runs: list[str], benches: list[str] | None, paths: list[str]) -> None:
    """One figure of a planned experiment (a kind of ``FIGURES``), as SVG + PNG."""
    if kind not in FIGURES:
        raise ValueError(f"unknown figure kind {kind!r}; valid: {', '.join(FIGURES)}")
    data, bench = load_results(runs, benches)
    figures.save_figure(FIGURES[kind](experiment, data, bench), [Path(p) for p in paths])
