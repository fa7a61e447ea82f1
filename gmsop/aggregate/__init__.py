"""Turn run results (``metrics.json``, ``bench.json``) into the paper's tables, claims and figures.

Reads only the result files (layout: :mod:`gmsop.formats`) and the planner's experiments
(:class:`gmsop.experiments.Experiment`, whose rows carry the run ids to select); never imports
torch or Snakemake, so the workflow's thin scripts (and a laptop without a GPU) can call it.

    data = load_metrics(metrics_files)              # runs, epochs, routing frames
    bench = load_bench(bench_files)                 # one row per benchmark
    table = build_table(plan.experiments["table2"], data.runs, bench)
    write_table(table, "results/tables/table2")     # .csv .md .html .tex
    card = build_scorecard(plan.experiments.values(), data.runs)
    save_figure(plot_alpha_sweep(plan.experiments["figure2"], data.runs), figure_paths("results/fig2"))

Modules: ``load`` (files -> frames), ``select`` (a planned row's files), ``stats`` (mean/std),
``claims`` (verdicts, intervals, rank agreement), ``tables``, ``scorecard``, ``display`` and
``writers`` (formats), ``paper_values`` (published numbers), ``figures`` (lazy: matplotlib).
"""
from gmsop.aggregate.claims import Claim, evaluate_claim, evaluate_claims, kendall_agreement, parse_claims
from gmsop.aggregate.load import (
    BENCH_COLUMNS, RUN_COLUMNS, MetricsData, ResultFileError, find_result_files, load_bench, load_epochs,
    load_metrics, load_routing, load_runs, select_epoch,
)
from gmsop.aggregate.paper_values import (
    PAPER_VALUES, TABLES, PaperValue, paper_frame, paper_params, paper_rows, paper_train_fps, paper_value,
)
from gmsop.aggregate.scorecard import build_scorecard, write_scorecard
from gmsop.aggregate.select import row_bench, row_runs
from gmsop.aggregate.stats import Summary, summarize, summarize_groups
from gmsop.aggregate.tables import TABLE_COLUMNS, build_table
from gmsop.aggregate.writers import (
    FORMATS, render_csv, render_html, render_latex, render_markdown, write_csv, write_html, write_latex,
    write_markdown, write_table,
)


def __getattr__(name: str):
    """Figures import matplotlib and seaborn (about a second); load them only when asked for."""
    import importlib

    figures = importlib.import_module("gmsop.aggregate.figures")  # not "from . import": that recurses here
    if name == "figures":
        return figures
    if name in figures.__all__:
        return getattr(figures, name)
    raise AttributeError(f"module 'gmsop.aggregate' has no attribute {name!r}")


__all__ = [
    "Claim", "evaluate_claim", "evaluate_claims", "kendall_agreement", "parse_claims",
    "BENCH_COLUMNS", "RUN_COLUMNS", "MetricsData", "ResultFileError", "find_result_files", "load_bench",
    "load_epochs", "load_metrics", "load_routing", "load_runs", "select_epoch",
    "PAPER_VALUES", "TABLES", "PaperValue", "paper_frame", "paper_params", "paper_rows", "paper_train_fps",
    "paper_value", "build_scorecard", "write_scorecard", "row_bench", "row_runs", "Summary", "summarize",
    "summarize_groups", "TABLE_COLUMNS", "build_table", "FORMATS", "render_csv", "render_html", "render_latex",
    "render_markdown", "write_csv", "write_html", "write_latex", "write_markdown", "write_table",
    "plot_routing", "plot_alpha_sweep", "plot_nk_grid", "plot_training_curves", "save_figure", "figure_paths",
]
