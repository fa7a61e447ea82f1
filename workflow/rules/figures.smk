# Figures 2 and 3 of the paper, training curves of every experiment and the class x component
# routing of every experiment with gated mixtures (SVG for the report, PNG).


rule curves:
    input:
        runs=lambda wildcards: runs_of(wildcards.experiment),
    output:
        svg=report(
            "results/figures/curves_{experiment}.svg",
            caption="../report/curves.rst",
            category="Training curves",
            labels={"experiment": "{experiment}", "type": "curves"},
        ),
        png="results/figures/curves_{experiment}.png",
    log:
        "logs/figures/curves_{experiment}.log",
    params:
        experiment=lambda wildcards: PLAN.experiments[wildcards.experiment],
        figure="curves",
    script:
        "../scripts/figure.py"


rule alpha_counts:
    input:
        runs=lambda wildcards: runs_of(wildcards.experiment),
    output:
        svg=report(
            "results/figures/{experiment}_counts.svg",
            caption="../report/alpha_counts.rst",
            category="Figures",
            labels={"experiment": "{experiment}", "type": "routing counts"},
        ),
        png="results/figures/{experiment}_counts.png",
    log:
        "logs/figures/{experiment}_counts.log",
    params:
        experiment=lambda wildcards: PLAN.experiments[wildcards.experiment],
        figure="alpha_counts",
    script:
        "../scripts/figure.py"


rule alpha_error:
    input:
        runs=lambda wildcards: runs_of(wildcards.experiment),
    output:
        svg=report(
            "results/figures/{experiment}_error.svg",
            caption="../report/alpha_error.rst",
            category="Figures",
            labels={"experiment": "{experiment}", "type": "error vs alpha"},
        ),
        png="results/figures/{experiment}_error.png",
    log:
        "logs/figures/{experiment}_error.log",
    params:
        experiment=lambda wildcards: PLAN.experiments[wildcards.experiment],
        figure="alpha_error",
    script:
        "../scripts/figure.py"


rule grid:
    input:
        runs=lambda wildcards: runs_of(wildcards.experiment),
        benches=lambda wildcards: benches_of(wildcards.experiment),
    output:
        svg=report(
            "results/figures/{experiment}_grid.svg",
            caption="../report/grid.rst",
            category="Figures",
            labels={"experiment": "{experiment}", "type": "N x K grid"},
        ),
        png="results/figures/{experiment}_grid.png",
    log:
        "logs/figures/{experiment}_grid.log",
    params:
        experiment=lambda wildcards: PLAN.experiments[wildcards.experiment],
        figure="grid",
    script:
        "../scripts/figure.py"


rule class_routing:
    input:
        runs=lambda wildcards: runs_of(wildcards.experiment),
    output:
        svg=report(
            "results/figures/{experiment}_class_routing.svg",
            caption="../report/class_routing.rst",
            category="Figures",
            labels={"experiment": "{experiment}", "type": "class x component routing"},
        ),
        png="results/figures/{experiment}_class_routing.png",
    log:
        "logs/figures/{experiment}_class_routing.log",
    params:
        experiment=lambda wildcards: PLAN.experiments[wildcards.experiment],
        figure="class_routing",
    script:
        "../scripts/figure.py"
