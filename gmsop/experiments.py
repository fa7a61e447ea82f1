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

from gmsop.aggregate.orderings import parse_orderings

__all__ = ["Plan", "Row", "make_plan", "run_id", "slug"]

ROW_KEYS = ("variant", "label", "backbone", "protocol", "dataset", "schedule", "batch_size", "width_mult", "overrides", "augment", "paper")
SPEC_KEYS = ("variant", "backbone", "protocol", "dataset", "data", "schedule", "batch_size", "width_mult", "overrides", "augment", "deterministic")


@dataclass
class Row:
    """One line of a table or one point of a figure."""

    label: str
    run: str  # run id (training, one per seed)
    bench: str  # benchmark id (throughput, seed-independent)
    seeds: list[int]
    variant: str
    backbone: str
    paper: str | None = None  # the paper's row name to compare with (None: no comparison)
    extra: dict = field(default_factory=dict)  # alpha, N, K, protocol ... for figures


@dataclass
class Plan:
    runs: dict[str, dict]  # run id -> resolved spec
    benches: dict[str, dict]  # bench id -> spec
    experiments: dict[str, dict]  # name -> {"kind", "title", "paper", "baseline", "rows": [Row]}
    datasets: dict[str, dict]  # dataset key -> {"name", "root", "options"}

    def train_jobs(self) -> list[tuple[str, int]]:
        """Unique (run, seed) pairs over all experiments, in a stable order."""
        seen: dict[tuple[str, int], None] = {}
        for exp in self.experiments.values():
            for row in exp["rows"]:
                for seed in row.seeds:
                    seen[(row.run, int(seed))] = None
        return list(seen)


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
    """Row settings, else the experiment's, else ``defaults``; dicts are merged key by key."""
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


def _check_variant(spec: dict, where: str) -> dict:
    """Build nothing, but fail now (not in a job) on names/options the registry refuses."""
    from gmsop.registry import parse_variant, _check_nk
    from gmsop.backbones import resolve_backbone
    from gmsop.protocol import get_protocol, protocol_fields
    from gmsop.heads import head_kwargs

    try:
        variant = parse_variant(spec["variant"])
        spec["backbone"] = resolve_backbone(spec["backbone"])
        proto_over = {k: v for k, v in spec["overrides"].items() if k in protocol_fields()}
        get_protocol(spec["protocol"], **proto_over)
        bad = sorted(k for k in spec["overrides"] if k not in proto_over and k not in head_kwargs(variant.head))
        if bad:
            raise ValueError(f"unknown override(s) {bad} for variant {variant.name!r}; head options: {head_kwargs(variant.head)}; protocol switches: {protocol_fields()}")
        _check_nk(variant, {**variant.kwargs, **spec["overrides"]})
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return spec


#: Switches that change the loss or the optimiser but not the computation a step performs:
#: runs differing only in these share one throughput benchmark.
_SPEED_NEUTRAL = ("alpha", "alpha_per_batch", "weight_decay")


def _bench_spec(spec: dict, bench: dict) -> dict:
    keys = ("variant", "backbone", "protocol", "dataset", "width_mult")
    overrides = {k: v for k, v in spec["overrides"].items() if k not in _SPEED_NEUTRAL}
    return {**{k: spec[k] for k in keys}, "overrides": overrides, "batch_size": int(bench.get("batch_size", spec["batch_size"]))}


def _rows_of(name: str, exp: dict) -> list[dict]:
    """Expand the experiment kinds into plain row dicts (+ the extra fields figures need)."""
    kind = exp.get("kind", "table")
    if kind == "table":
        return [dict(r) for r in exp["rows"]]
    if kind == "alpha":
        return [
            {"variant": exp["variant"], "label": f"alpha={a:g}", "overrides": {"alpha": float(a)}, "_extra": {"alpha": float(a)}}
            for a in exp["alphas"]
        ]
    if kind == "grid":
        fam = exp.get("family", "GM-GAP")
        rows = []
        for n in exp["n"]:
            for k in exp["k"]:
                if int(k) <= int(n):  # K > N is impossible; such grid points are skipped
                    rows.append({"variant": f"{fam}-{int(n)}-{int(k)}", "label": f"N={int(n)}, K={int(k)}", "_extra": {"N": int(n), "K": int(k)}})
        if exp.get("baseline"):  # the single-component reference the speed is relative to
            rows.insert(0, {"variant": exp["baseline"], "label": exp["baseline"]})
        return rows
    if kind == "protocols":
        return [{"variant": exp["variant"], "protocol": p, "label": f"{exp['variant']} ({p})", "_extra": {"protocol": p}} for p in exp["protocols"]]
    raise ValueError(f"experiments.{name}: unknown kind {kind!r}; valid: table, alpha, grid, protocols")


def make_plan(config: dict) -> Plan:
    """Resolve every experiment of ``config`` into rows, runs and benchmarks (validating names)."""
    config = copy.deepcopy(config)
    runs: dict[str, dict] = {}
    benches: dict[str, dict] = {}
    experiments: dict[str, dict] = {}
    bench_cfg = config.get("bench", {})
    for name, exp in config.get("experiments", {}).items():
        if not exp.get("enabled", True):
            continue
        seeds = [int(s) for s in exp.get("seeds", config.get("defaults", {}).get("seeds", [0]))]
        rows: list[Row] = []
        for i, raw in enumerate(_rows_of(name, exp)):
            where = f"experiments.{name}.rows[{i}]"
            extra = raw.pop("_extra", {})
            unknown = sorted(set(raw) - set(ROW_KEYS))
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(ROW_KEYS)}")
            spec = _check_variant(_resolve(raw, exp, config, where), where)
            rid = run_id(spec)
            runs[rid] = spec
            bspec = _bench_spec(spec, bench_cfg)
            bid = run_id(bspec | {"schedule": None})
            benches[bid] = bspec
            label = raw.get("label") or spec["variant"]
            rows.append(Row(label, rid, bid, seeds, spec["variant"], spec["backbone"], raw.get("paper", spec["variant"]), extra))
        labels = [r.label for r in rows]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"experiments.{name}: duplicate row label(s) {dup}; give each row a distinct 'label'")
        parse_orderings(exp.get("orderings"), labels, f"experiments.{name}.orderings")
        experiments[name] = {
            "orderings": list(exp.get("orderings") or []),
            "kind": exp.get("kind", "table"),
            "title": exp.get("title", name),
            "paper": exp.get("paper"),
            "baseline": exp.get("baseline"),
            "rows": rows,
        }
    return Plan(runs, benches, experiments, config.get("datasets", {}))
