# Load and validate the config, expand it into a plan (gmsop.experiments), constrain wildcards.
import os
import re

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from gmsop.data.cache import CACHE_ENV
from gmsop.experiments import check_data, describe_schema_error, make_plan
from gmsop.formats import (
    BENCH_DIR,
    CHECKED_METRICS_PATH,
    CHECKPOINT_DIR,
    DATASET_INFO_PATH,
    RULE_METRICS_PATH,
    RUN_METRICS_PATH,
)
from gmsop.pipeline import write_identities
from gmsop.plugins import load_plugins

SCHEMA = os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")

try:
    validate(config, SCHEMA)
except WorkflowError as err:
    # jsonschema prints the whole subschema before the location: say where and what first
    cause = err.__context__
    if not hasattr(cause, "absolute_path"):
        raise
    with open(SCHEMA) as fh:
        schema = yaml.safe_load(fh)
    raise WorkflowError(
        f"config error at {describe_schema_error(cause, schema)}\n"
        f"(every key is documented in workflow/schemas/config.schema.yaml)"
    ) from None
# Dataset caches go under the workflow's results (or config cache_dir), never into the data.
if config.get("cache_dir") or not os.environ.get(CACHE_ENV):
    os.environ[CACHE_ENV] = os.path.abspath(config.get("cache_dir") or "results/cache")
load_plugins(config.get("plugins", []))
PLAN = make_plan(config)
# what each training and benchmark job writes as its identity (gmsop.pipeline.identity)
write_identities(PLAN, config)
for _line in PLAN.notes:
    logger.warning(_line)
BENCH = config.get("bench", {}).get("enabled", True)
# A missing dataset root or a batch larger than the training set stops the workflow before any
# job runs; a dry-run only warns about a missing root (the data may not be downloaded yet).
MISSING_ROOTS, DATA_ERRORS = check_data(PLAN)
if DATA_ERRORS:
    raise WorkflowError("\n".join(DATA_ERRORS))
for _line in MISSING_ROOTS:
    logger.warning(f"{_line}; a run (not a dry-run) stops here")


onstart:
    if MISSING_ROOTS:
        raise WorkflowError("\n".join(MISSING_ROOTS))


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"


wildcard_constraints:
    run=_alternatives(PLAN.runs),
    dataset=_alternatives(PLAN.datasets),
    experiment=_alternatives(PLAN.experiments),
    seed=r"\d+",
    rulename=_alternatives({r.rule for r in PLAN.rule_rows()}),


def runs_of(experiment):
    """metrics.json of every (row, seed) of one experiment (a rule row's once checked)."""
    rows = PLAN.experiments[experiment].rows
    return sorted({r.read_path(s) for r in rows for s in r.seeds})


def claimed_runs():
    """metrics.json of every row of every experiment that checks claims (the scorecard's input)."""
    return sorted(
        {f for n, e in PLAN.experiments.items() if e.claims for f in runs_of(n)}
    )


def benched(experiment):
    """Benchmark ids of an experiment's rows, in row order, once each."""
    rows = PLAN.experiments[experiment].rows
    return list(dict.fromkeys(r.bench for r in rows if r.bench))


def benches_of(experiment):
    """The experiment's benchmark folder (one job measures every network it shows), if any."""
    if not BENCH or not benched(experiment):
        return []
    return [BENCH_DIR.format(experiment=experiment)]


def check_rule_rows():
    """Every table row ``{rule: NAME}`` names a rule of this workflow (config ``rule_files``)."""
    defined = {r.name for r in workflow.rules}
    for row in PLAN.rule_rows():
        if defined.isdisjoint(
            [row.rule]
        ):  # the linter would read "row.rule not in" as a rule
            raise ValueError(
                f"experiments.{row.experiment}.rows[{row.index}]: rule {row.rule!r} is not defined; "
                f"add the file that defines it to rule_files (rules here: {', '.join(sorted(defined))}); "
                f"it must write {row.result_path(0).replace('seed0', 'seed{seed}')}"
            )


def dataset_of_run(wildcards):
    return DATASET_INFO_PATH.format(dataset=PLAN.runs[wildcards.run]["dataset"])


def datasets_of_benches(wildcards):
    benches = benched(wildcards.experiment)
    return sorted(
        {DATASET_INFO_PATH.format(dataset=PLAN.benches[b]["dataset"]) for b in benches}
    )


def experiments_of_kind(*kinds):
    return [n for n, e in PLAN.experiments.items() if e.kind in kinds]


def get_final_output():
    out = []
    if any(e.claims for e in PLAN.experiments.values()):
        out += expand(
            "results/scorecard.{ext}", ext=["csv", "md", "html", "svg", "png"]
        ) + ["results/report/scorecard-landing.html"]
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
        gated_rows = [r for r in exp.rows if r.k is not None and not r.rule]
        if gated_rows:
            out += expand(
                "results/figures/{experiment}_class_routing.{ext}",
                experiment=name,
                ext=["svg", "png"],
            )
    return out
