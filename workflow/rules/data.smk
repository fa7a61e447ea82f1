# Prepare each dataset once (build its cache) before any job reads it; record its shape.


rule prepare_data:
    output:
        "results/data/{dataset}.json",
    log:
        "logs/prepare_data/{dataset}.log",
    params:
        dataset=lambda wildcards: PLAN.datasets[wildcards.dataset],
    script:
        "../scripts/prepare_data.py"
