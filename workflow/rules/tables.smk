# One table per experiment: mean ± std over seeds, FPS, the paper's value and our delta.


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
        experiment=lambda wildcards: PLAN.experiments[wildcards.experiment]
        | {"rows": rows_of(wildcards.experiment)},
    script:
        "../scripts/table.py"
