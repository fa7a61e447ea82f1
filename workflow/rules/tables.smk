# A user's rule row: each metrics.json its rule writes is checked by a job of its own as soon as
# it exists (format, run id, seed; gmsop.formats.read_rule_metrics) and copied to where tables,
# figures and the scorecard read it, so a malformed file stops before anything depends on it.


rule check_rule_metrics:
    input:
        RULE_METRICS_PATH,
    output:
        CHECKED_METRICS_PATH,
    log:
        "logs/check_rule_metrics/{rulename}/seed{seed}.log",
    priority: max(map(PLAN.training_cost, PLAN.runs), default=0) + 1
    script:
        "../scripts/check_rule_metrics.py"


# One table per experiment: mean ± std over seeds, FPS, its claims; the paper's value only on its own data.


rule table:
    input:
        runs=lambda wildcards: runs_of(wildcards.experiment),
        benches=lambda wildcards: benches_of(wildcards.experiment),
    output:
        csv="results/tables/{experiment}.csv",
        md="results/tables/{experiment}.md",
        html=report(
            "results/tables/{experiment}.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "type": "table"},
        ),
        tex="results/tables/{experiment}.tex",
    log:
        "logs/table/{experiment}.log",
    params:
        experiment=lambda wildcards: PLAN.experiments[wildcards.experiment],
    script:
        "../scripts/table.py"


# Every claim of every experiment in one table; the report's landing page shows it first.
rule scorecard:
    input:
        runs=claimed_runs(),
    output:
        csv="results/scorecard.csv",
        md="results/scorecard.md",
        html=report(
            "results/scorecard.html",
            caption="../report/scorecard.rst",
            category="Scorecard",
            labels={"type": "scorecard"},
        ),
        landing="results/report/scorecard-landing.html",
        svg="results/scorecard.svg",
        png="results/scorecard.png",
    log:
        "logs/scorecard.log",
    params:
        experiments=lambda wildcards: [e for e in PLAN.experiments.values() if e.claims],
    script:
        "../scripts/scorecard.py"
