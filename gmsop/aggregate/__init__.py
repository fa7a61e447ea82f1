"""Turn run results (``metrics.json``, ``bench.json``) into the paper's tables, claims and figures.

Reads only the result files (layout: :mod:`gmsop.formats`) and the planner's experiments
(:class:`gmsop.experiments.Experiment`, whose rows carry the run ids to select); never imports
torch or Snakemake, so the workflow's thin scripts (and a laptop without a GPU) can call it.

    data = load_metrics(metrics_files)              # runs, epochs, routing frames
    bench = load_bench(bench_files)                 # one row per benchmark
    table = build_table(plan.experiments["table2"], data.runs, bench)
    write_table(table, "results/tables/table2")     # .csv .md .html .tex
    card = build_scorecard(plan.experiments.values(), data.runs)   # claims, Holm-adjusted
    write_scorecard(card, "results/scorecard")      # .csv .md .html, forest plot .svg .png
    save_figure(plot_alpha_sweep(plan.experiments["figure2"], data.runs), figure_paths("results/fig2"))

Modules: ``load`` (files -> frames), ``select`` (a planned row's files), ``stats`` (mean/std),
``claims`` (verdicts, intervals, Holm's adjustment, rank agreement), ``tables``, ``scorecard``,
``display`` and ``writers`` (formats), ``paper_values`` (published numbers and setting),
``figures`` and ``forest`` (the scorecard's plot; lazy: matplotlib).
"""

import importlib

#: Public name -> the module that defines it. Imported on first use (PEP 562): a job that only
#: parses claims (planning) must not pay for pandas, scipy and matplotlib.
_WHERE = {
    "claims": (
        "Claim",
        "adjust_holm",
        "evaluate_claim",
        "evaluate_claims",
        "failed_seeds",
        "holm",
        "kendall_agreement",
        "parse_claims",
        "verdict_kind",
    ),
    "load": (
        "BENCH_COLUMNS",
        "RUN_COLUMNS",
        "MetricsData",
        "ResultFileError",
        "find_result_files",
        "load_bench",
        "load_epochs",
        "load_metrics",
        "load_routing",
        "load_runs",
        "select_epoch",
    ),
    "paper_values": (
        "PAPER_VALUES",
        "TABLES",
        "PaperValue",
        "paper_frame",
        "paper_params",
        "paper_rows",
        "paper_train_fps",
        "paper_value",
    ),
    "scorecard": ("build_scorecard", "write_scorecard"),
    "select": ("row_bench", "row_runs"),
    "stats": ("Summary", "summarize", "summarize_groups"),
    "tables": ("TABLE_COLUMNS", "build_table"),
    "writers": (
        "FORMATS",
        "render_csv",
        "render_html",
        "render_latex",
        "render_markdown",
        "write_csv",
        "write_html",
        "write_latex",
        "write_markdown",
        "write_table",
    ),
    "forest": ("forest_data", "plot_forest"),
    "figures": (
        "plot_routing",
        "plot_alpha_sweep",
        "plot_nk_grid",
        "plot_training_curves",
        "save_figure",
        "figure_paths",
    ),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str):
    if name in _WHERE:
        return importlib.import_module(f"gmsop.aggregate.{name}")
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"gmsop.aggregate.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module 'gmsop.aggregate' has no attribute {name!r}")


__all__ = sorted(_MODULE_OF)
