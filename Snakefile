# gmsop: every table and figure of GM-SOP (NeurIPS 2018) from one command.
#
#   results/data/{dataset}.json                   dataset prepared (cache built), its shape
#   results/runs/{run}/seed{seed}/metrics.json    one training run (resumes from
#                                                 results/checkpoints/{run}/seed{seed}/, undeclared)
#   results/bench/{experiment}/{bench}.json       throughput of each network it shows (timm protocol)
#   results/tables/{experiment}.{csv,md,html,tex} a table (mean ± std over seeds, its claims)
#   results/scorecard.{csv,md,html}               every claim of every experiment (report landing page)
#   results/figures/{name}.{svg,png}              figures 2 and 3, training curves
#   logs/ mirrors results/; reports/report.html via `snakemake --report reports/report.html`
import os

from snakemake.utils import min_version

min_version("9.1")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"


# Your own methods as rules (README "Add a variant as a rule"): files named in rule_files,
# relative to the working directory.
for _rule_file in config.get("rule_files", []):

    include: os.path.abspath(_rule_file)


check_rule_rows()


# On a cluster, aggregation runs on the submit host; only data, train and bench become jobs.
localrules:
    all,
    check_rule_metrics,
    table,
    scorecard,
    curves,
    alpha_counts,
    alpha_error,
    grid,
    class_routing,


rule all:
    default_target: True
    input:
        get_final_output(),
