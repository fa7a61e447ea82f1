# Throughput of every network an experiment shows (timm protocol: warm-up, timed steps,
# synchronised): results/bench/{experiment}/{bench}.json. One job per experiment measures its
# networks one after the other in one process, so a job's start-up (torch's import, about 2 s
# on a CPU) is paid once per experiment, not once per network, and the speeds a table sets
# side by side come from one run. Priority 0: after the training runs.


rule bench:
    input:
        datasets_of_benches,
    output:
        directory(BENCH_DIR),
    log:
        "logs/bench/{experiment}.log",
    benchmark:
        "results/benchmarks/bench/{experiment}.tsv"
    threads: config["threads_per_job"]
    resources:
        gpu=config["gpus_per_job"],
        runtime=lambda wildcards: 30 + 5 * len(benched(wildcards.experiment)),
        mem_mb=config["train_mem_mb"],
    params:
        benches=lambda wildcards: {
            b: PLAN.benches[b] for b in benched(wildcards.experiment)
        },
        bench=config["bench"],
        device=config["device"],
        plugins=config["plugins"],
    script:
        "../scripts/bench.py"
