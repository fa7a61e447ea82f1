"""From the workflow config to a plan: which runs to train, which to benchmark, what each
table and figure shows.

An experiment (``table``, ``alpha``, ``grid`` or ``protocols``) expands into rows; each row is
fully resolved against ``defaults`` (backbone, protocol, schedule, batch size, width, overrides,
augmentation) into a *run spec*. A run's id is a readable slug plus a hash of its spec, so two
tables that need the same training share ONE run (no duplicate training) while any change of
setting makes a new one. Seeds are not part of the spec: a run is trained once per seed.
The spec also holds the dataset's fingerprint (name, builder version, every option with the
builder's defaults filled in) and, for a file-backed dataset, the hash of its files' content
(``gmsop.data.content``), so data changed in code or on disk never reuses results of the old data.

The Snakemake workflow only calls ``make_plan(config)``; the logic lives here, where pytest
sees it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from gmsop.claim_spec import Claim, parse_claims
from gmsop.formats import CHECKED_METRICS_PATH, RULE_METRICS_PATH, RUN_METRICS_PATH
from gmsop.protocol import SPEED_NEUTRAL

__all__ = [
    "Plan",
    "Row",
    "Experiment",
    "make_plan",
    "run_id",
    "slug",
    "PAPER_DATASETS",
    "check_data",
    "describe_schema_error",
    "SPEED_NEUTRAL",
    "canonical_value",
    "training_cost",
]

ROW_KEYS = (
    "variant",
    "rule",
    "label",
    "backbone",
    "protocol",
    "dataset",
    "schedule",
    "batch_size",
    "lr_scaling",
    "width_mult",
    "overrides",
    "augment",
    "paper",
)
SPEC_KEYS = (
    "variant",
    "backbone",
    "protocol",
    "dataset",
    "data",
    "schedule",
    "batch_size",
    "lr_scaling",
    "width_mult",
    "overrides",
    "augment",
    "deterministic",
)

#: The datasets the paper's numbers were measured on (registered dataset names). A row is
#: compared with a published number only when it ran on one of these at full width.
PAPER_DATASETS = ("imagenet64", "places365")

#: Keys a row produced by a user's own Snakemake rule may have (README "Add a variant").
RULE_ROW_KEYS = ("rule", "label", "dataset", "paper")
_RULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Row:
    """One line of a table or one point of a figure: the one object planning hands to tables,
    claims, figures, the scorecard and the report (no reader re-derives any of its fields).

    ``run``/``bench`` are the ids of its training and throughput jobs; every metrics.json and
    bench.json carries the id it was trained for, so aggregation selects files by these ids.
    ``settings`` are the resolved run settings (what the run id hashes). The variant facts
    (``num_experts``, ``k``, ``alpha``, ``display``) come from ``gmsop.registry.resolve_variant``.
    A row with ``rule`` is produced by a user's own Snakemake rule, not by gmsop's trainer: its
    run id is ``rule:<rule>``, it has no benchmark and no width, and its files are where
    :meth:`result_path` says.
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
    width_mult: float | None  # None for a rule row (its method has no width)
    settings: dict = field(hash=False)
    paper: str | None = None  # the paper's row name to compare with ("GM-GAP-16-8*": starred)
    num_experts: int | None = None  # N of a mixture
    k: int | None = None  # K of a gated mixture
    alpha: float | None = None  # the balance-loss weight a mixture trains with (protocol + overrides)
    rule: str | None = None  # the user's Snakemake rule that writes this row's metrics.json files
    schedule_family: str | None = None  # the registry's schedule family of the variant ("gap", ...)

    def result_path(self, seed: int) -> str:
        """Where the metrics.json of one seed is (the workflow's one path convention for results)."""
        if self.rule:
            return RULE_METRICS_PATH.format(rulename=self.rule, seed=int(seed))
        return RUN_METRICS_PATH.format(run=self.run, seed=int(seed))

    def read_path(self, seed: int) -> str:
        """Where tables, figures and the scorecard read the metrics.json of one seed: a rule row's
        copy once the workflow's own check of it passed (rule ``check_rule_metrics``), so a
        malformed file stops right after its rule, before anything depends on it; else
        :meth:`result_path`."""
        if self.rule:
            return CHECKED_METRICS_PATH.format(rulename=self.rule, seed=int(seed))
        return self.result_path(seed)

    @property
    def paper_key(self) -> tuple[str, str] | None:
        """(paper variant, tag) under which gmsop.paper_values files this row."""
        if not self.paper:
            return None
        return (self.paper[:-1], "star") if self.paper.endswith("*") else (self.paper, "")

    def paper_setting_gaps(self, paper_dataset: str) -> tuple[str, ...]:
        """How this row's setting differs from the paper's on ``paper_dataset`` (empty: it is the
        paper's setting in full, so a published number there is comparable with it): the dataset,
        its options in :data:`gmsop.paper_values.PAPER_DATA_OPTIONS` (input size, the
        complete download), full width, and a schedule at least as long as the paper's."""
        from gmsop import paper_values as pv

        if self.rule:
            return (f"trained by rule {self.rule!r}, whose setting the plan does not know",)
        if self.dataset_name != paper_dataset:
            return (f"dataset {self.dataset_name}, not {paper_dataset}",)
        gaps = []
        options = (self.settings.get("data") or {}).get("options") or {}
        for key, want in pv.PAPER_DATA_OPTIONS.get(paper_dataset, {}).items():
            if options.get(key) != want:
                gaps.append(f"{key} {options.get(key)!r}, not {want!r}")
        if self.width_mult is None or float(self.width_mult) != 1.0:
            gaps.append(f"width {self.width_mult:g}, not 1")
        epochs = sum(int(e) for _, e in self.settings.get("schedule") or ())
        epochs *= 2 if (self.settings.get("augment") or {}).get("flip_double") else 1
        need = pv.paper_epochs(paper_dataset, self.backbone, self.variant, self.schedule_family)
        if need is None:
            gaps.append(f"no schedule of the paper for {self.variant} on {self.backbone}")
        elif epochs < need:
            gaps.append(f"{epochs} epochs, not {need}")
        return tuple(gaps)

    def in_paper_setting(self, paper_dataset: str) -> bool:
        """True when a published number on ``paper_dataset`` is comparable with this row
        (:meth:`paper_setting_gaps` finds no difference)."""
        return not self.paper_setting_gaps(paper_dataset)


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
        raise KeyError(
            f"experiment {self.name!r} has no row {label!r}; rows are {[r.label for r in self.rows]}"
        )


@dataclass
class Plan:
    runs: dict[str, dict]  # run id -> resolved settings
    benches: dict[str, dict]  # bench id -> settings
    experiments: dict[str, Experiment]
    datasets: dict[str, dict]  # dataset key -> {"name", "root", "options"}
    contents: dict[str, str | None] = field(default_factory=dict)  # dataset key -> its files' content hash
    notes: list[str] = field(default_factory=list)  # what planning left out, for the user to read

    def train_jobs(self) -> list[tuple[str, int]]:
        """Unique (run, seed) pairs over all experiments, in a stable order."""
        seen: dict[tuple[str, int], None] = {}
        for exp in self.experiments.values():
            for row in exp.rows:
                for seed in row.seeds if not row.rule else ():  # a user's rule trains its own rows
                    seen[(row.run, int(seed))] = None
        return list(seen)

    def rule_rows(self) -> list[Row]:
        """Rows produced by users' own rules (their rules must exist in the workflow)."""
        return [r for e in self.experiments.values() for r in e.rows if r.rule]

    def planned_for(self, run: str) -> list[dict[str, str]]:
        """The (experiment, row label) pairs that ask for training run ``run``."""
        return [
            {"experiment": e.name, "row": r.label}
            for e in self.experiments.values()
            for r in e.rows
            if r.run == run
        ]

    def training_cost(self, run: str) -> float:
        """Rough relative cost of training run ``run`` once (see ``training_cost``)."""
        return training_cost(self.runs[run])

    def bench_planned_for(self, bench: str) -> list[dict[str, str]]:
        """The (experiment, row label) pairs that show benchmark ``bench``."""
        return [
            {"experiment": e.name, "row": r.label}
            for e in self.experiments.values()
            for r in e.rows
            if r.bench == bench
        ]


def slug(text: str) -> str:
    """Lower-case, [a-z0-9-] only: safe in paths and Snakemake wildcards."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_id(spec: dict) -> str:
    """``<variant>_<backbone>_<dataset>_<protocol>_<hash>``: a readable slug and a hash of the spec
    with its ``overrides`` normalised (``_canonical_overrides``), so a run's id depends only on
    its resolved settings.

    The planner already resolves every other field to one form (the schedule as [lr, epochs]
    pairs whether named or given, the dataset's fingerprint with the builder's defaults filled
    in, the canonical backbone key). Raw overrides are not: under ``official``, ``{alpha: 100}``
    is the protocol's own alpha, and on GM-GAP-16-4 ``{num_experts: 16}`` is the name's N, yet
    hashed as given they made new ids, so Figure 2's alpha = 100 point and Figure 3's N = 16,
    K = 4 point trained the same network twice. Before hashing, an override equal to what the
    variant resolves to without it is dropped, and numbers are compared and hashed by value
    (100 and 100.0 are one setting). Dropping redundant overrides was chosen over hashing the
    whole resolution (every protocol switch and head option): a spec with no redundant override
    hashes as before, a benchmark spec keeps leaving out the switches that do not change speed
    (alpha, weight decay), and an id does not move when a new head option with a default is
    added to the code. What is still not unified: a non-default protocol whose switches are all
    overridden to another protocol's values (the protocol name stays in the id), and a head
    option spelt out as the value the head computes from a None default (``dims`` = (2C, 128)).
    """
    canonical = {**spec, "overrides": _canonical_overrides(spec)} if "overrides" in spec else spec
    return f"{slug(spec['variant'])}_{spec['backbone']}_{slug(spec['dataset'])}_{spec['protocol']}_{_digest(canonical)}"


def canonical_value(value):
    """A setting in one form: a whole float as an int (100.0 -> 100), tuples as lists, bools kept."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, (list, tuple)):
        return [canonical_value(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical_value(v) for k, v in value.items()}
    return value


def _canonical_overrides(spec: dict) -> dict:
    """``spec["overrides"]`` without the overrides that change nothing, numbers in one form.

    An override is dropped when it equals the value the variant resolves to without any override
    (``gmsop.registry.resolve_variant`` on the spec's variant, backbone and protocol, at width 1:
    override values are given unscaled): a protocol switch equal to the named protocol's value,
    a head option equal to the name's value (N, K, X), the registry's value on this backbone
    (the WRN-36-2 GM-GAP gate) or the head's default. None values are dropped (the registry
    ignores them). A spec the registry cannot resolve keeps its overrides (only canonicalised).
    """
    overrides = {k: canonical_value(v) for k, v in (spec.get("overrides") or {}).items() if v is not None}
    if not overrides:
        return overrides
    from gmsop.protocol import protocol_fields
    from gmsop.registry import head_default, resolve_variant

    try:
        base = resolve_variant(
            spec["variant"], backbone=spec.get("backbone"), protocol=spec.get("protocol") or "official"
        )
    except (ValueError, KeyError):
        return overrides
    switches = set(protocol_fields())
    out = {}
    for key, value in overrides.items():
        if key in switches:
            default = getattr(base.protocol, key)
        elif key == "classifier":
            default = base.classifier
        else:
            default = base.head_kwargs.get(key, head_default(base.head, key))
        if canonical_value(default) != value or isinstance(default, bool) != isinstance(value, bool):
            out[key] = value
    return out


def _schedule(value, schedules: dict, where: str) -> list[list[float]]:
    """A row's schedule as [lr, epochs] pairs: a name resolves in ``schedules`` (the config's),
    then among the released schedules (``gmsop.engine.config.DEFAULT_SCHEDULES``: gap, srsop,
    gm_sop), so a config restates them only to change them. Validated by ``parse_schedule``."""
    from gmsop.engine.config import DEFAULT_SCHEDULES, parse_schedule

    if isinstance(value, str):
        known = {**DEFAULT_SCHEDULES, **schedules}
        if value not in known:
            raise ValueError(f"{where}: unknown schedule {value!r}; defined schedules: {', '.join(known)}")
        value = known[value]
    try:  # the rule broken: lr > 0 and finite, at least one phase, epochs >= 1
        return [[lr, ep] for lr, ep in parse_schedule(value)]
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


#: A key that becomes a file name (experiments, datasets): no path separators, no leading dot.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_config(config: dict) -> None:
    """Plan-time refusals that name the offending key: experiment and dataset keys must be plain
    names (they become file names: ``../../x`` would write outside the working directory), seeds
    must be distinct (two equal seeds would silently count as one run), and every named schedule
    valid (``gmsop.engine.config.parse_schedule``)."""
    for section in ("experiments", "datasets"):
        for key in config.get(section) or {}:
            if not isinstance(key, str) or not _PLAIN_NAME.match(key):
                raise ValueError(
                    f"{section}: key {key!r} is not a plain name (letters, digits, '_', '-', '.'; not starting "
                    f"with '.'); it becomes a file name under results/"
                )
    seed_lists = [("defaults.seeds", (config.get("defaults") or {}).get("seeds"))]
    seed_lists += [
        (f"experiments.{n}.seeds", e.get("seeds"))
        for n, e in (config.get("experiments") or {}).items()
        if isinstance(e, dict)
    ]
    for where, seeds in seed_lists:
        if seeds is None:
            continue
        dup = sorted({s for s in seeds if list(seeds).count(s) > 1})
        if dup:
            raise ValueError(
                f"{where}: seed(s) {dup} given more than once in {list(seeds)}; each seed is one run, "
                f"so give distinct seeds"
            )
    tables = [("schedules", config.get("schedules"))]
    tables += [
        (f"experiments.{n}.schedules", e.get("schedules"))
        for n, e in (config.get("experiments") or {}).items()
        if isinstance(e, dict)
    ]
    for where, table in tables:
        for name, schedule in (table or {}).items():
            _schedule(schedule, {}, f"{where}.{name}")  # every named schedule, used or not


def _check_dataset_key(dataset: str, config: dict, where: str) -> None:
    if dataset not in config.get("datasets", {}):
        raise ValueError(
            f"{where}: unknown dataset {dataset!r}; defined datasets: {', '.join(config.get('datasets', {}))}"
        )


def _resolve(row: dict, exp: dict, config: dict, where: str) -> dict:
    """Row settings, else the experiment's, else ``defaults``; dicts are merged key by key. A
    schedule given nowhere is the variant's schedule family (gmsop.registry); a schedule name
    resolves in the experiment's own ``schedules`` first, then in the top-level ones."""
    defaults = config.get("defaults", {})
    spec = {}
    for key in (
        "backbone",
        "protocol",
        "dataset",
        "schedule",
        "batch_size",
        "lr_scaling",
        "width_mult",
        "deterministic",
    ):
        spec[key] = row.get(key, exp.get(key, defaults.get(key)))
    if spec["lr_scaling"] is None:
        spec["lr_scaling"] = "linear"  # the released step size per image at any batch (gmsop.engine.config)
    for key in ("overrides", "augment"):
        spec[key] = {**defaults.get(key, {}), **exp.get(key, {}), **row.get(key, {})}
    spec["variant"] = row["variant"]
    _check_dataset_key(spec["dataset"], config, where)
    spec["data"] = _fingerprint(config["datasets"][spec["dataset"]], f"datasets.{spec['dataset']}")
    if spec["schedule"] is None:
        spec["schedule"] = _variant_or_error(spec, where).schedule_family
    schedules = {**(config.get("schedules") or {}), **(exp.get("schedules") or {})}
    spec["schedule"] = _schedule(spec["schedule"], schedules, where)
    return {k: spec[k] for k in SPEC_KEYS}


def _fingerprint(entry: dict, where: str) -> dict:
    from gmsop.data import dataset_fingerprint

    if not isinstance(entry, dict) or "name" not in entry:
        raise ValueError(f"{where}: a dataset needs a 'name' (one of the registered datasets), got {entry!r}")
    try:
        return dataset_fingerprint(entry["name"], entry.get("options") or {})
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _with_content(data: dict, key: str, config: dict, contents: dict[str, str | None]) -> dict:
    """A run's data fingerprint plus the content hash of dataset ``key``'s files, computed once
    per plan (``contents``). Unchanged for generated data, and for a root that does not exist yet
    (a dry-run only warns about it, see ``check_data``; a real run stops before any job)."""
    if key not in contents:
        entry = config["datasets"][key]
        root = entry.get("root")
        contents[key] = None
        if root is None or Path(root).expanduser().exists():
            from gmsop.data import content_fingerprint

            try:
                contents[key] = content_fingerprint(entry["name"], root, entry.get("options") or {})
            except ValueError as err:
                raise ValueError(f"datasets.{key}: {err}") from None
    return data if contents[key] is None else {**data, "content": contents[key]}


def _variant_or_error(spec: dict, where: str):
    """The registry's resolution of a row's variant (builds nothing); a refused name or option
    fails here, at plan time, naming the row, instead of in a job."""
    from gmsop.registry import resolve_variant

    try:
        return resolve_variant(
            spec["variant"],
            backbone=spec["backbone"],
            protocol=spec["protocol"],
            overrides=spec["overrides"],
            width_mult=float(spec.get("width_mult") or 1.0),
        )
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


#: Per-image training cost relative to ResNet-18 with a first-order, single head at equal width.
#: Used only to order jobs (``training_cost``); no result depends on it. Measured on the embedded
#: default (2-core CPU): ResNet-50 and WRN-36-2 train at 0.4-0.5x ResNet-18's images/s;
#: a second-order head (SR-SOP) or a mixture (GM-GAP-16-8) at 0.6-0.8x, both (GM-SOP-16-8,
#: Ave-SOP-16) at 0.3-0.4x.
BACKBONE_COST = {"resnet50": 2.5, "wrn36_2": 2.0}
SECOND_ORDER_COST = 1.5
MIXTURE_COST = 1.5


def train_options(spec: dict) -> dict:
    """The dataset options a run spec trains with: its dataset's (defaults filled in), with the
    row's ``augment`` in place of the dataset's own when the row sets one (as
    ``gmsop.pipeline.train_config`` passes them)."""
    options = dict((spec.get("data") or {}).get("options") or {})
    if spec.get("augment"):
        options["augment"] = dict(spec["augment"])
    return options


def _flip_doubled(spec: dict) -> bool:
    """Whether a run spec's training set is flip-doubled (``gmsop.data.flip_doubled``)."""
    from gmsop.data import flip_doubled

    return flip_doubled(spec["data"]["name"], train_options(spec))


def training_cost(spec: dict) -> float:
    """Rough relative cost of training a run spec once: epochs x training images (twice as many
    when flip-doubled, ``gmsop.data.flip_doubled``) x the per-image factors above (training images
    count 1 where the dataset does not say how many).

    The workflow gives each training job this as its Snakemake priority, so the costliest runs
    start first and no long run is left alone on one core at the end (longest-first scheduling):
    the embedded default once ended with a 65 s Table-2 run started last, on one core of two.
    """
    resolved = _variant_or_error(spec, f"run {spec.get('variant')!r}")
    epochs = sum(int(e) for _, e in spec["schedule"])
    images = ((spec.get("data") or {}).get("options") or {}).get("n_train") or 1
    if _flip_doubled(spec):  # the mirrored copy doubles an epoch
        images *= 2
    cost = epochs * float(images) * BACKBONE_COST.get(resolved.backbone, 1.0)
    if resolved.second_order:
        cost *= SECOND_ORDER_COST
    if resolved.num_experts is not None:  # several components (not the single-CM Xd head)
        cost *= MIXTURE_COST
    return cost


def _bench_spec(spec: dict, bench: dict) -> dict:
    keys = ("variant", "backbone", "protocol", "dataset", "width_mult")
    overrides = {k: v for k, v in spec["overrides"].items() if k not in SPEED_NEUTRAL}
    batch = bench.get("batch_size")  # null: each run's own batch (WRN-36-2 trains at 150, the rest at 256)
    return {
        **{k: spec[k] for k in keys},
        "overrides": overrides,
        "batch_size": int(batch if batch is not None else spec["batch_size"]),
    }


def _rows_of(name: str, exp: dict) -> list[dict]:
    """Expand the experiment kinds into plain row dicts (the config's row keys only)."""
    kind = exp.get("kind", "table")
    if kind == "table":
        return [dict(r) for r in exp["rows"]]
    if kind == "alpha":
        return [
            {"variant": exp["variant"], "label": f"alpha={a:g}", "overrides": {"alpha": float(a)}}
            for a in exp["alphas"]
        ]
    if kind == "grid":
        fam = exp.get("family", "GM-GAP")
        points, skipped = _grid_points(exp)
        if not points:
            raise ValueError(
                f"experiments.{name}: every grid point has K > N ({_points_text(skipped)}), "
                f"so it plans no run; give n values at least as large as some k"
            )
        rows = [{"variant": f"{fam}-{n}-{k}", "label": f"N={n}, K={k}"} for n, k in points]
        if exp.get("baseline"):  # the single-component reference the speed is relative to
            rows.insert(0, {"variant": exp["baseline"], "label": exp["baseline"]})
        return rows
    if kind == "protocols":
        return [
            {"variant": exp["variant"], "protocol": p, "label": f"{exp['variant']} ({p})"}
            for p in exp["protocols"]
        ]
    raise ValueError(f"experiments.{name}: unknown kind {kind!r}; valid: table, alpha, grid, protocols")


def _grid_points(exp: dict) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """A grid experiment's (N, K) points in order, and those skipped because K > N (impossible)."""
    pairs = [(int(n), int(k)) for n in exp["n"] for k in exp["k"]]
    return [p for p in pairs if p[1] <= p[0]], [p for p in pairs if p[1] > p[0]]


def _points_text(points: list[tuple[int, int]]) -> str:
    return ", ".join(f"N={n} K={k}" for n, k in points)


def _rule_row(
    name: str, index: int, raw: dict, exp: dict, config: dict, seeds: tuple[int, ...], where: str
) -> Row:
    """A row whose metrics.json files a user's own rule writes (README "Add a variant")."""
    if exp.get("kind", "table") != "table":
        raise ValueError(
            f"{where}: a 'rule' row belongs in a table experiment, not in kind {exp.get('kind')!r}"
        )
    unknown = sorted(set(raw) - set(RULE_ROW_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: a rule row takes only {', '.join(RULE_ROW_KEYS)}; got {unknown} (the rule itself "
            "decides how its method trains)"
        )
    rule = raw["rule"]
    if not isinstance(rule, str) or not _RULE_NAME.match(rule):
        raise ValueError(
            f"{where}: rule {rule!r} is not a Snakemake rule name (letters, digits, underscores)"
        )
    dataset = raw.get("dataset", exp.get("dataset", config.get("defaults", {}).get("dataset")))
    _check_dataset_key(dataset, config, where)
    from gmsop.formats import rule_run_id

    label = raw.get("label") or rule
    return Row(
        experiment=name,
        index=index,
        label=label,
        run=rule_run_id(rule),
        bench="",
        seeds=seeds,
        variant=label,
        display=label,
        backbone="",
        protocol="",
        dataset=dataset,
        dataset_name=str(config["datasets"][dataset]["name"]),
        width_mult=None,
        settings={"rule": rule},
        paper=raw.get("paper"),
        rule=rule,
    )


def _baseline_label(name: str, baseline: str | None, rows: list[Row]) -> str | None:
    """The row a baseline names (by label, else by variant): exactly one must match."""
    if not baseline:
        return None
    hits = [r for r in rows if r.label == baseline] or [r for r in rows if r.variant == baseline]
    if len(hits) != 1:
        how = "matches no row" if not hits else f"matches {len(hits)} rows; name one by its label"
        raise ValueError(
            f"experiments.{name}.baseline: {baseline!r} {how}; rows are {[r.label for r in rows]}"
        )
    return hits[0].label


def make_plan(config: dict) -> Plan:
    """Resolve every experiment of ``config`` into rows, runs and benchmarks (validating names)."""
    config = copy.deepcopy(config)
    _check_config(config)
    runs: dict[str, dict] = {}
    benches: dict[str, dict] = {}
    experiments: dict[str, Experiment] = {}
    bench_cfg = config.get("bench", {})
    datasets = config.get("datasets", {})
    contents: dict[str, str | None] = {}
    notes: list[str] = []
    for name, exp in config.get("experiments", {}).items():
        if not exp.get("enabled", True):
            continue
        seeds = tuple(int(s) for s in exp.get("seeds", config.get("defaults", {}).get("seeds", [0])))
        rows: list[Row] = []
        for i, raw in enumerate(_rows_of(name, exp)):
            where = f"experiments.{name}.rows[{i}]"
            if "rule" in raw:
                rows.append(_rule_row(name, i, raw, exp, config, seeds, where))
                continue
            unknown = sorted(set(raw) - set(ROW_KEYS))
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(ROW_KEYS)}")
            spec = _resolve(raw, exp, config, where)
            spec["data"] = _with_content(spec["data"], spec["dataset"], config, contents)
            facts = _variant_or_error(spec, where)
            spec["backbone"] = facts.backbone
            rid = run_id(spec)
            runs[rid] = spec
            bspec = _bench_spec(spec, bench_cfg)
            bid = run_id(bspec | {"schedule": None})
            benches[bid] = bspec
            rows.append(
                Row(
                    experiment=name,
                    index=i,
                    label=raw.get("label") or spec["variant"],
                    run=rid,
                    bench=bid,
                    seeds=seeds,
                    variant=spec["variant"],
                    display=facts.display_name,
                    backbone=spec["backbone"],
                    protocol=spec["protocol"],
                    dataset=spec["dataset"],
                    dataset_name=str(datasets[spec["dataset"]]["name"]),
                    width_mult=float(spec["width_mult"] or 1.0),
                    settings=spec,
                    paper=raw.get("paper", spec["variant"]),
                    num_experts=facts.num_experts,
                    k=facts.k,
                    alpha=facts.alpha,
                    schedule_family=facts.schedule_family,
                )
            )
        if not rows:
            raise ValueError(
                f"experiments.{name}: plans no run (no rows); give it rows or set enabled: false"
            )
        skipped = _grid_points(exp)[1] if exp.get("kind") == "grid" else []
        if skipped:
            notes.append(f"experiments.{name}: grid points skipped because K > N: {_points_text(skipped)}")
        labels = [r.label for r in rows]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(
                f"experiments.{name}: duplicate row label(s) {dup}; give each row a distinct 'label'"
            )
        experiments[name] = Experiment(
            name=name,
            kind=exp.get("kind", "table"),
            title=exp.get("title", name),
            paper=exp.get("paper"),
            baseline=_baseline_label(name, exp.get("baseline"), rows),
            claims=parse_claims(exp.get("orderings"), labels, f"experiments.{name}.orderings"),
            rows=tuple(rows),
            counts_alphas=tuple(float(a) for a in exp.get("counts_alphas") or ()),
            family=exp.get("family"),
        )
    return Plan(runs, benches, experiments, datasets, contents, notes)


def check_data(plan: Plan) -> tuple[list[str], list[str]]:
    """What a job would stumble on in the planned runs' data, found without building a dataset.

    Returns ``(missing_roots, errors)``: ``missing_roots`` names each dataset whose ``root`` does
    not exist (relative roots are relative to the working directory); ``errors`` names each row
    whose batch is larger than its training set, where the training size is cheap to know
    (``gmsop.data.train_size``: generated data from its options, npz from its array headers), and
    each dataset whose files cannot be read (a truncated npz: the file and the reason).
    Datasets whose size is not cheap to know (folder, imagenet64, places365) are checked by the
    training job when it loads the data, before the first step. The workflow stops on both
    before any job runs (a dry-run only warns about missing roots, so the job counts of a
    paper config can be checked before its data is downloaded).
    """
    from gmsop.data import train_size

    used = {spec["dataset"] for spec in plan.runs.values()}
    missing, errors, sizes = [], [], {}
    for key in sorted(used):
        entry = plan.datasets[key]
        root = entry.get("root")
        if root is not None and not Path(root).expanduser().exists():
            missing.append(
                f"datasets.{key}.root: {root} does not exist (resolved: {Path(root).expanduser().absolute()})"
            )
            sizes[key] = None
        else:
            try:
                sizes[key] = train_size(entry["name"], root, entry.get("options") or {})
            except ValueError as err:  # an unreadable file, named with the reason
                errors.append(f"datasets.{key}: {err}")
                sizes[key] = None
    too_large: dict[tuple[str, int, int], list[str]] = {}  # (dataset, batch, images) -> rows
    for exp in plan.experiments.values():
        for row in exp.rows:
            spec = plan.runs.get(row.run)
            if spec is None or sizes.get(spec["dataset"]) is None:
                continue
            n = sizes[spec["dataset"]]
            if int(spec["batch_size"]) > n * (2 if _flip_doubled(spec) else 1):
                key = (spec["dataset"], int(spec["batch_size"]), n)
                too_large.setdefault(key, []).append(
                    f"experiments.{exp.name}.rows[{row.index}] ({row.label})"
                )
    for (dataset, batch, n), rows in too_large.items():
        more = f" and {len(rows) - 3} more rows" if len(rows) > 3 else ""
        errors.append(
            f"{', '.join(rows[:3])}{more}: batch_size {batch} is larger than the training set of "
            f"datasets.{dataset} ({n} images); every epoch would be empty"
        )
    return missing, errors


def describe_schema_error(err, schema: dict | None = None) -> str:
    """A config schema error (``jsonschema.ValidationError``) as one short line that starts with
    the location (``experiments.table2.rows[3]``) and the offending key or value, instead of the
    schema dump jsonschema prints before them. ``schema`` (the whole schema) lets an unknown key
    list the keys allowed there."""
    where = _location(err)
    branch = _matching_branch(err) if err.validator in ("oneOf", "anyOf") else None
    if branch is not None:  # name the rule broken in the branch the value was meant for
        rule = f" ({err.schema['description']})" if err.schema.get("description") else ""
        return f"{_location(branch)}: {branch.message}{rule}"
    if err.validator in ("additionalProperties", "unevaluatedProperties"):
        found = re.findall(r"'([^']*)'", err.message.split("(")[-1])
        allowed = sorted(_schema_keys(err.schema, schema or {}))
        keys = ", ".join(repr(k) for k in found) or err.message
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"{where}: unknown key {keys}{hint}"
    return f"{where}: {err.message}"


def _location(err) -> str:
    """``experiments.table2.rows[3].schedule[0][0]``: where in the config an error is."""
    where = ""
    for part in err.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return where or "(top level)"


def _matching_branch(err):
    """Of a oneOf/anyOf error, the deepest error inside the alternatives whose type the value
    has (a schedule given as a list broke the list's rules, not the name's), else None."""
    inside = [e for e in err.context if not (e.validator == "type" and len(e.relative_path) == 0)]
    return max(inside, key=lambda e: len(e.absolute_path), default=None)


def _schema_keys(sub: dict, root: dict, depth: int = 0) -> set[str]:
    """The property names a (sub)schema allows, following allOf and local $refs."""
    if not isinstance(sub, dict) or depth > 5:
        return set()
    keys = set(sub.get("properties", {}))
    for part in sub.get("allOf", []):
        keys |= _schema_keys(part, root, depth + 1)
    ref = sub.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node = root
        for name in ref[2:].split("/"):
            node = node.get(name, {}) if isinstance(node, dict) else {}
        keys |= _schema_keys(node, root, depth + 1)
    return keys
