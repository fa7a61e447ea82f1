# Prepare each dataset once (build its cache) before any job reads it; record its shape.


rule prepare_data:
    output:
        DATASET_INFO_PATH,
    log:
        "logs/prepare_data/{dataset}.log",
    params:
        dataset=lambda wildcards: PLAN.datasets[wildcards.dataset],
        # the content hash of a file-backed dataset's files: a changed file prepares it again
        content=lambda wildcards: PLAN.contents.get(wildcards.dataset),
    script:
        "../scripts/prepare_data.py"
