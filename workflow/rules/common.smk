# Load and validate the config, expand it into a plan (gmsop.experiments), constrain wildcards.
import re

from snakemake.utils import validate

from gmsop.experiments import make_plan
from gmsop.plugins import load_plugins

validate(config, "../schemas/config.schema.yaml")
load_plugins(config.get("plugins", []))
PLAN = make_plan(config)
BENCH = config.get("bench", {}).get("enabled", True)


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"


wildcard_constraints:
    run=_alternatives(PLAN.runs),
    bench=_alternatives(PLAN.benches),
    dataset=_alternatives(PLAN.datasets),
    experiment=_alternatives(PLAN.experiments),
    seed=r"\d+",


def runs_of(experiment):
    """metrics.json of every (row, seed) of one experiment."""
    rows = PLAN.experiments[experiment].rows
    return sorted(
        {f"results/runs/{r.run}/seed{s}/metrics.json" for r in rows for s in r.seeds}
    )


def claimed_runs():
    """metrics.json of every row of every experiment that checks claims (the scorecard's input)."""
    return sorted(
        {f for n, e in PLAN.experiments.items() if e.claims for f in runs_of(n)}
    )


def benches_of(experiment):
    if not BENCH:
        return []
    return sorted(
        {f"results/bench/{r.bench}.json" for r in PLAN.experiments[experiment].rows}
    )


def dataset_of_run(wildcards):
    return f"results/data/{PLAN.runs[wildcards.run]['dataset']}.json"


def dataset_of_bench(wildcards):
    return f"results/data/{PLAN.benches[wildcards.bench]['dataset']}.json"


def experiments_of_kind(*kinds):
    return [n for n, e in PLAN.experiments.items() if e.kind in kinds]


def get_final_output():
    out = []
    if any(e.claims for e in PLAN.experiments.values()):
        out += expand("results/scorecard.{ext}", ext=["csv", "md", "html"]) + [
            "results/report/scorecard-landing.html"
        ]
    for name, exp in PLAN.experiments.items():
        out += expand(
            "results/tables/{experiment}.{ext}",
            experiment=name,
            ext=["csv", "md", "html", "tex"],
        )
        out += expand(
            "results/figures/curves_{experiment}.{ext}",
            experiment=name,
            ext=["svg", "png"],
        )
        if exp.kind == "alpha":
            out += expand(
                "results/figures/{experiment}_{panel}.{ext}",
                experiment=name,
                panel=["counts", "error"],
                ext=["svg", "png"],
            )
        if exp.kind == "grid":
            out += expand(
                "results/figures/{experiment}_grid.{ext}",
                experiment=name,
                ext=["svg", "png"],
            )
    return out
