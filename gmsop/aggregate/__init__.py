"""Turn run results (``metrics.json``, ``bench.json``) into the paper's tables, claims and figures.

Reads only the result files (layout: :mod:`gmsop.formats`) and the planner's experiments
(:class:`gmsop.experiments.Experiment`, whose rows carry the run ids to select); never Snakemake.

    data = load.load_metrics(metrics_files)         # runs, epochs, routing frames
    table = tables.build_table(plan.experiments["table2"], data.runs, load.load_bench(bench_files))
    writers.write_table(table, "results/tables/table2")      # .csv .md .html .tex
    scorecard.write_scorecard(scorecard.build_scorecard(plan.experiments.values(), data.runs), stem)
"""
