"""Turn run results (``metrics.json``, ``bench.json``) into the paper's tables and figures.

Reads only the result files the trainer and the benchmark write; never imports torch or
Snakemake, so the workflow's thin scripts (and a laptop without a GPU) can call it directly.

    runs = load_runs(metrics_files)                 # one row per training run
    bench = load_bench(bench_files)                 # one row per benchmark
    spec = TableSpec.from_config("table2", config["tables"]["table2"])
    table = build_table_from_spec(runs, bench, spec)
    write_table(table, "results/tables/table2")     # .csv .md .html .tex
    save_figure(plot_alpha_sweep(runs), figure_paths("results/figures/fig2_right"))
"""
# load.py: result files -> frames
from gmsop.aggregate.load import (
    BENCH_COLUMNS, RUN_COLUMNS, MetricsData, ResultFileError, find_result_files, load_bench,
    load_epochs, load_metrics, load_routing, load_runs, read_bench, read_metrics, select_epoch,
)
# paper_values.py: published numbers
from gmsop.aggregate.paper_values import (
    PAPER_VALUES, TABLES, PaperValue, paper_frame, paper_params, paper_rows, paper_train_fps, paper_value,
)
# spec.py: table specs and run selection
from gmsop.aggregate.spec import RowSpec, TableSpec, apply_where, parse_rows, parse_table_specs
# stats.py: mean / std / n over seeds
from gmsop.aggregate.stats import Summary, summarize, summarize_groups
# tables.py: one table as numbers
from gmsop.aggregate.tables import TABLE_COLUMNS, build_table, build_table_from_spec
# writers.py: CSV / Markdown / HTML / LaTeX
from gmsop.aggregate.writers import (
    FORMATS, render_csv, render_html, render_latex, render_markdown, write_csv, write_html,
    write_latex, write_markdown, write_table,
)
# figures.py: Figures 2 and 3, training curves (imports matplotlib/seaborn on first use)


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
    "BENCH_COLUMNS", "RUN_COLUMNS", "MetricsData", "ResultFileError", "find_result_files", "load_bench",
    "load_epochs", "load_metrics", "load_routing", "load_runs", "read_bench", "read_metrics", "select_epoch",
    "PAPER_VALUES", "TABLES", "PaperValue", "paper_frame", "paper_params", "paper_rows", "paper_train_fps",
    "paper_value", "RowSpec", "TableSpec", "apply_where", "parse_rows", "parse_table_specs", "Summary", "summarize",
    "summarize_groups", "TABLE_COLUMNS", "build_table", "build_table_from_spec", "FORMATS", "render_csv",
    "render_html", "render_latex", "render_markdown", "write_csv", "write_html", "write_latex",
    "write_markdown", "write_table", "plot_routing", "plot_alpha_sweep", "plot_nk_grid",
    "plot_training_curves", "save_figure", "figure_paths",
]
