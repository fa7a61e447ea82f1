# One training run per (run, seed). Resumes from results/checkpoints/{run}/seed{seed}/, which
# is deliberately NOT an output: Snakemake deletes outputs of interrupted jobs, and an
# interrupted run must keep its last epoch. metrics.json is written last, atomically.
# The costliest runs start first (priority: gmsop.experiments.training_cost), so no long run is
# left alone on one core at the end; no result depends on the order.


rule train:
    input:
        dataset_of_run,
    output:
        RUN_METRICS_PATH,
    log:
        "logs/train/{run}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{run}/seed{seed}.tsv"
    priority: lambda wildcards: PLAN.training_cost(wildcards.run)
    retries: config["train_retries"]
    threads: config["threads_per_job"]
    resources:
        gpu=config["gpus_per_job"],
        runtime=lambda wildcards, attempt: config["train_runtime_min"] * attempt,
        mem_mb=lambda wildcards, attempt: config["train_mem_mb"] * attempt,
    params:
        spec=lambda wildcards: PLAN.runs[wildcards.run],
        dataset=lambda wildcards: PLAN.datasets[PLAN.runs[wildcards.run]["dataset"]],
        ckpt_dir=lambda wildcards: CHECKPOINT_DIR.format(
            run=wildcards.run, seed=wildcards.seed
        ),
        device=config["device"],
        eval_every=config["eval_every"],
        plugins=config["plugins"],
    script:
        "../scripts/train.py"
