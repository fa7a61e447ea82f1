"""Turn run results (``metrics.json``, ``bench.json``) into the paper's tables, claims and figures.

Reads only the result files (layout: :mod:`gmsop.formats`) and the planner's experiments
(:class:`gmsop.experiments.Experiment`, whose rows carry the run ids to select); never torch.

    data = load_metrics(metrics_files)              # runs, epochs, routing frames
    table = build_table(plan.experiments["table2"], data.runs, load_bench(bench_files))
    write_table(table, "results/tables/table2")     # .csv .md .html .tex
    write_scorecard(build_scorecard(plan.experiments.values(), data.runs), "results/scorecard")
"""

from gmsop.aggregate.claims import (
    adjust_holm,
    evaluate_claim,
    evaluate_claims,
    failed_seeds,
    holm,
    kendall_agreement,
    verdict_kind,
)
from gmsop.aggregate.figures import (
    figure_paths,
    plot_alpha_sweep,
    plot_nk_grid,
    plot_routing,
    plot_training_curves,
    save_figure,
)
from gmsop.aggregate.forest import forest_data, plot_forest
from gmsop.aggregate.load import (
    BENCH_COLUMNS,
    RUN_COLUMNS,
    MetricsData,
    find_result_files,
    load_bench,
    load_metrics,
    load_runs,
    select_epoch,
)
from gmsop.aggregate.scorecard import build_scorecard, write_scorecard
from gmsop.aggregate.select import row_bench, row_runs
from gmsop.aggregate.stats import Summary, summarize
from gmsop.aggregate.tables import TABLE_COLUMNS, build_table
from gmsop.aggregate.writers import (
    FORMATS,
    render_csv,
    render_html,
    render_latex,
    render_markdown,
    write_table,
)
from gmsop.claim_spec import Claim, parse_claims
from gmsop.formats import ResultFileError

__all__ = [
    "BENCH_COLUMNS",
    "FORMATS",
    "RUN_COLUMNS",
    "TABLE_COLUMNS",
    "Claim",
    "MetricsData",
    "ResultFileError",
    "Summary",
    "adjust_holm",
    "build_scorecard",
    "build_table",
    "evaluate_claim",
    "evaluate_claims",
    "failed_seeds",
    "figure_paths",
    "find_result_files",
    "forest_data",
    "holm",
    "kendall_agreement",
    "load_bench",
    "load_metrics",
    "load_runs",
    "parse_claims",
    "plot_alpha_sweep",
    "plot_forest",
    "plot_nk_grid",
    "plot_routing",
    "plot_training_curves",
    "render_csv",
    "render_html",
    "render_latex",
    "render_markdown",
    "row_bench",
    "row_runs",
    "save_figure",
    "select_epoch",
    "summarize",
    "verdict_kind",
    "write_scorecard",
    "write_table",
]
