"""From the workflow config to a plan: which runs to train, which to benchmark, what each
table and figure shows.

An experiment (``table``, ``alpha``, ``grid`` or ``protocols``) expands into rows; each row is
fully resolved against ``defaults`` (backbone, protocol, schedule, batch size, width, overrides,
augmentation) into a *run spec*. A run's id is a readable slug plus a hash of its spec, so two
tables that need the same training share ONE run (no duplicate training) while any change of
setting makes a new one. Seeds are not part of the spec: a run is trained once per seed.
The spec also holds the dataset's fingerprint (name, builder version, every option with the
builder's defaults filled in), so data changed in code never reuses results of the old data.

The Snakemake workflow only calls ``make_plan(config)``; the logic lives here, where pytest
sees it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field

from gmsop.aggregate.claims import Claim, parse_claims

__all__ = ["Plan", "Row", "Experiment", "make_plan", "run_id", "slug", "PAPER_DATASETS"]

ROW_KEYS = ("variant", "label", "backbone", "protocol", "dataset", "schedule", "batch_size", "width_mult", "overrides", "augment", "paper")
SPEC_KEYS = ("variant", "backbone", "protocol", "dataset", "data", "schedule", "batch_size", "width_mult", "overrides", "augment", "deterministic")

#: The datasets the paper's numbers were measured on (registered dataset names). A row is
#: compared with a published number only when it ran on one of these at full width.
PAPER_DATASETS = ("imagenet64", "places365")


@dataclass(frozen=True)
class Row:
    """One line of a table or one point of a figure: the one object planning hands to tables,
    claims, figures, the scorecard and the report (no reader re-derives any of its fields).

    ``run``/``bench`` are the ids of its training and throughput jobs; every metrics.json and
    bench.json carries the id it was trained for, so aggregation selects files by these ids.
    ``settings`` are the resolved run settings (what the run id hashes). The variant facts
    (``num_experts``, ``k``, ``alpha``, ``display``) come from ``gmsop.registry.resolve_variant``.
    """

    experiment: str
    index: int
    label: str
    run: str  # run id (training, one per seed)
    bench: str  # benchmark id (throughput, seed-independent)
    seeds: tuple[int, ...]
    variant: str  # the variant name as planned (its settings' "variant")
    display: str  # the registry's display name on this backbone ("ResNet-50-512d")
    backbone: str
    protocol: str
    dataset: str  # the config's dataset key
    dataset_name: str  # the registered dataset it builds ("synthetic", "imagenet64", ...)
    width_mult: float
    settings: dict = field(hash=False)
    paper: str | None = None  # the paper's row name to compare with ("GM-GAP-16-8*": starred)
    num_experts: int | None = None  # N of a mixture
    k: int | None = None  # K of a gated mixture
    alpha: float | None = None  # the balance-loss weight a mixture trains with (protocol + overrides)

    @property
    def paper_key(self) -> tuple[str, str] | None:
        """(paper variant, tag) under which gmsop.aggregate.paper_values files this row."""
        if not self.paper:
            return None
        return (self.paper[:-1], "star") if self.paper.endswith("*") else (self.paper, "")

    def on_paper_data(self, paper_dataset: str) -> bool:
        """True when a published number on ``paper_dataset`` is comparable with this row: it ran
        on that dataset (not a stand-in) at full width."""
        return self.dataset_name == paper_dataset and float(self.width_mult) == 1.0


@dataclass(frozen=True)
class Experiment:
    """A table or figure: its rows in order, the claims checked on them, what the paper calls it."""

    name: str
    kind: str  # table | alpha | grid | protocols
    title: str
    paper: str | None  # the paper's table/figure id ("table2", "figure2", ...), or None
    baseline: str | None  # label of the row relative speeds are taken against
    claims: tuple[Claim, ...]
    rows: tuple[Row, ...]
    counts_alphas: tuple[float, ...] = ()  # alpha: the alphas Figure 2 (left) compares
    family: str | None = None  # grid: "GM-GAP" or "GM-SOP"

    def row(self, label: str) -> Row:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(f"experiment {self.name!r} has no row {label!r}; rows are {[r.label for r in self.rows]}")


@dataclass
class Plan:
    runs: dict[str, dict]  # run id -> resolved settings
    benches: dict[str, dict]  # bench id -> settings
    experiments: dict[str, Experiment]
    datasets: dict[str, dict]  # dataset key -> {"name", "root", "options"}

    def train_jobs(self) -> list[tuple[str, int]]:
        """Unique (run, seed) pairs over all experiments, in a stable order."""
        seen: dict[tuple[str, int], None] = {}
        for exp in self.experiments.values():
            for row in exp.rows:
                for seed in row.seeds:
                    seen[(row.run, int(seed))] = None
        return list(seen)

    def planned_for(self, run: str) -> list[dict[str, str]]:
        """The (experiment, row label) pairs that ask for training run ``run``."""
        return [{"experiment": e.name, "row": r.label} for e in self.experiments.values() for r in e.rows if r.run == run]

    def bench_planned_for(self, bench: str) -> list[dict[str, str]]:
        """The (experiment, row label) pairs that show benchmark ``bench``."""
        return [{"experiment": e.name, "row": r.label} for e in self.experiments.values() for r in e.rows if r.bench == bench]


def slug(text: str) -> str:
    """Lower-case, [a-z0-9-] only: safe in paths and Snakemake wildcards."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_id(spec: dict) -> str:
    return f"{slug(spec['variant'])}_{spec['backbone']}_{slug(spec['dataset'])}_{spec['protocol']}_{_digest(spec)}"


def _schedule(value, schedules: dict, where: str) -> list[list[float]]:
    if isinstance(value, str):
        if value not in schedules:
            raise ValueError(f"{where}: unknown schedule {value!r}; defined schedules: {', '.join(schedules) or 'none'}")
        value = schedules[value]
    if not value or any(len(step) != 2 or float(step[0]) <= 0 or int(step[1]) < 1 for step in value):
        raise ValueError(f"{where}: a schedule is a non-empty list of [lr > 0, epochs >= 1] pairs, got {value!r}")
    return [[float(lr), int(ep)] for lr, ep in value]


def _resolve(row: dict, exp: dict, config: dict, where: str) -> dict:
    """Row settings, else the experiment's, else ``defaults``; dicts are merged key by key. A
    schedule given nowhere is the variant's schedule family (gmsop.registry) in ``schedules``."""
    defaults = config.get("defaults", {})
    spec = {}
    for key in ("backbone", "protocol", "dataset", "schedule", "batch_size", "width_mult", "deterministic"):
        spec[key] = row.get(key, exp.get(key, defaults.get(key)))
    for key in ("overrides", "augment"):
        spec[key] = {**defaults.get(key, {}), **exp.get(key, {}), **row.get(key, {})}
    spec["variant"] = row["variant"]
    if spec["dataset"] not in config.get("datasets", {}):
        raise ValueError(f"{where}: unknown dataset {spec['dataset']!r}; defined datasets: {', '.join(config.get('datasets', {}))}")
    spec["data"] = _fingerprint(config["datasets"][spec["dataset"]], f"datasets.{spec['dataset']}")
    if spec["schedule"] is None:
        spec["schedule"] = _variant_or_error(spec, where).schedule_family
    spec["schedule"] = _schedule(spec["schedule"], config.get("schedules", {}), where)
    return {k: spec[k] for k in SPEC_KEYS}


def _fingerprint(entry: dict, where: str) -> dict:
    from gmsop.data import dataset_fingerprint

    if not isinstance(entry, dict) or "name" not in entry:
        raise ValueError(f"{where}: a dataset needs a 'name' (one of the registered datasets), got {entry!r}")
    try:
        return dataset_fingerprint(entry["name"], entry.get("options") or {})
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _variant_or_error(spec: dict, where: str):
    """The registry's resolution of a row's variant (builds nothing); a refused name or option
    fails here, at plan time, naming the row, instead of in a job."""
    from gmsop.registry import resolve_variant

    try:
        return resolve_variant(spec["variant"], backbone=spec["backbone"], protocol=spec["protocol"],
                               overrides=spec["overrides"], width_mult=float(spec.get("width_mult") or 1.0))
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


#: Switches that change the loss or the optimiser but not the computation a step performs:
#: runs differing only in these share one throughput benchmark.
_SPEED_NEUTRAL = ("alpha", "alpha_per_batch", "weight_decay")


def _bench_spec(spec: dict, bench: dict) -> dict:
    keys = ("variant", "backbone", "protocol", "dataset", "width_mult")
    overrides = {k: v for k, v in spec["overrides"].items() if k not in _SPEED_NEUTRAL}
    return {**{k: spec[k] for k in keys}, "overrides": overrides, "batch_size": int(bench.get("batch_size", spec["batch_size"]))}


def _rows_of(name: str, exp: dict) -> list[dict]:
    """Expand the experiment kinds into plain row dicts (the config's row keys only)."""
    kind = exp.get("kind", "table")
    if kind == "table":
        return [dict(r) for r in exp["rows"]]
    if kind == "alpha":
        return [{"variant": exp["variant"], "label": f"alpha={a:g}", "overrides": {"alpha": float(a)}} for a in exp["alphas"]]
    if kind == "grid":
        fam = exp.get("family", "GM-GAP")
        rows = []
        for n in exp["n"]:
            for k in exp["k"]:
                if int(k) <= int(n):  # K > N is impossible; such grid points are skipped
                    rows.append({"variant": f"{fam}-{int(n)}-{int(k)}", "label": f"N={int(n)}, K={int(k)}"})
        if exp.get("baseline"):  # the single-component reference the speed is relative to
            rows.insert(0, {"variant": exp["baseline"], "label": exp["baseline"]})
        return rows
    if kind == "protocols":
        return [{"variant": exp["variant"], "protocol": p, "label": f"{exp['variant']} ({p})"} for p in exp["protocols"]]
    raise ValueError(f"experiments.{name}: unknown kind {kind!r}; valid: table, alpha, grid, protocols")


def _baseline_label(name: str, baseline: str | None, rows: list[Row]) -> str | None:
    """The row a baseline names (by label, else by variant): exactly one must match."""
    if not baseline:
        return None
    hits = [r for r in rows if r.label == baseline] or [r for r in rows if r.variant == baseline]
    if len(hits) != 1:
        how = "matches no row" if not hits else f"matches {len(hits)} rows; name one by its label"
        raise ValueError(f"experiments.{name}.baseline: {baseline!r} {how}; rows are {[r.label for r in rows]}")
    return hits[0].label


def make_plan(config: dict) -> Plan:
    """Resolve every experiment of ``config`` into rows, runs and benchmarks (validating names)."""
    config = copy.deepcopy(config)
    runs: dict[str, dict] = {}
    benches: dict[str, dict] = {}
    experiments: dict[str, Experiment] = {}
    bench_cfg = config.get("bench", {})
    datasets = config.get("datasets", {})
    for name, exp in config.get("experiments", {}).items():
        if not exp.get("enabled", True):
            continue
        seeds = tuple(int(s) for s in exp.get("seeds", config.get("defaults", {}).get("seeds", [0])))
        rows: list[Row] = []
        for i, raw in enumerate(_rows_of(name, exp)):
            where = f"experiments.{name}.rows[{i}]"
            unknown = sorted(set(raw) - set(ROW_KEYS))
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(ROW_KEYS)}")
            spec = _resolve(raw, exp, config, where)
            facts = _variant_or_error(spec, where)
            spec["backbone"] = facts.backbone
            rid = run_id(spec)
            runs[rid] = spec
            bspec = _bench_spec(spec, bench_cfg)
            bid = run_id(bspec | {"schedule": None})
            benches[bid] = bspec
            rows.append(Row(
                experiment=name, index=i, label=raw.get("label") or spec["variant"], run=rid, bench=bid, seeds=seeds,
                variant=spec["variant"], display=facts.display_name, backbone=spec["backbone"],
                protocol=spec["protocol"], dataset=spec["dataset"], dataset_name=str(datasets[spec["dataset"]]["name"]),
                width_mult=float(spec["width_mult"] or 1.0), settings=spec, paper=raw.get("paper", spec["variant"]),
                num_experts=facts.num_experts, k=facts.k, alpha=facts.alpha,
            ))
        labels = [r.label for r in rows]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"experiments.{name}: duplicate row label(s) {dup}; give each row a distinct 'label'")
        experiments[name] = Experiment(
            name=name, kind=exp.get("kind", "table"), title=exp.get("title", name), paper=exp.get("paper"),
            baseline=_baseline_label(name, exp.get("baseline"), rows),
            claims=parse_claims(exp.get("orderings"), labels, f"experiments.{name}.orderings"),
            rows=tuple(rows), counts_alphas=tuple(float(a) for a in exp.get("counts_alphas") or ()),
            family=exp.get("family"),
        )
    return Plan(runs, benches, experiments, datasets)
