# Throughput of every benchmarked variant (timm protocol: warm-up, timed steps, synchronised).


rule bench:
    input:
        dataset_of_bench,
    output:
        "results/bench/{bench}.json",
    log:
        "logs/bench/{bench}.log",
    benchmark:
        "results/benchmarks/bench/{bench}.tsv"
    threads: config["threads_per_job"]
    resources:
        gpu=config["gpus_per_job"],
        runtime=30,
        mem_mb=config["train_mem_mb"],
    params:
        spec=lambda wildcards: PLAN.benches[wildcards.bench],
        bench=config["bench"],
        device=config["device"],
        plugins=config["plugins"],
    script:
        "../scripts/bench.py"
