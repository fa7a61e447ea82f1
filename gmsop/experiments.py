"""From the workflow config to a plan: the runs to train and benchmark, what each table and figure
shows. Each row resolves against ``defaults`` into a run spec (data fingerprint and content hash
included, seeds not); its run id is a slug plus the spec's hash, so tables share equal runs."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

from gmsop import paper_values as pv
from gmsop.claim_spec import Claim, parse_claims
from gmsop.data import content_fingerprint, dataset_fingerprint, flip_doubled, train_size
from gmsop.engine.config import DEFAULT_SCHEDULES, parse_schedule
from gmsop.formats import CHECKED_METRICS_PATH, RULE_METRICS_PATH, RUN_METRICS_PATH, rule_run_id
from gmsop.protocol import SPEED_NEUTRAL, protocol_fields
from gmsop.registry import ResolvedVariant, head_default, resolve_variant

ROW_KEYS = (
    "variant rule label backbone protocol dataset schedule batch_size lr_scaling width_mult overrides "
    "augment paper"
).split()
#: Settings a row takes from itself, else its experiment, else ``defaults``.
INHERITED_KEYS = "backbone protocol dataset schedule batch_size lr_scaling width_mult deterministic".split()
SPEC_KEYS = (
    "variant backbone protocol dataset data schedule batch_size lr_scaling width_mult overrides augment "
    "deterministic"
).split()
#: Keys a row produced by a user's own Snakemake rule may have (README "Add a variant").
RULE_ROW_KEYS = ("rule", "label", "dataset", "paper")
_RULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A key that becomes a file name (experiments, datasets): no path separators, no leading dot.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Row:
    """One line of a table or point of a figure; a ``rule`` row is trained by a user's own Snakemake
    rule (run id ``rule:<rule>``, no benchmark, no width)."""

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
    resolved: ResolvedVariant | None = field(default=None, repr=False, compare=False)

    def result_path(self, seed: int) -> str:
        """Where the metrics.json of one seed is written."""
        path = RULE_METRICS_PATH if self.rule else RUN_METRICS_PATH
        return path.format(rulename=self.rule, run=self.run, seed=int(seed))

    def read_path(self, seed: int) -> str:
        """Where the metrics.json of one seed is read: a rule row's checked copy."""
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
        """How this row's setting differs from the paper's on ``paper_dataset`` (empty: comparable):
        dataset, its ``PAPER_DATA_OPTIONS``, full width, a schedule at least as long as the paper's."""
        if self.rule:
            return (f"trained by rule {self.rule!r}, whose setting the plan does not know",)
        if self.dataset_name != paper_dataset:
            return (f"dataset {self.dataset_name}, not {paper_dataset}",)
        options = (self.settings.get("data") or {}).get("options") or {}
        gaps = [
            f"{key} {options.get(key)!r}, not {want!r}"
            for key, want in pv.PAPER_DATA_OPTIONS.get(paper_dataset, {}).items()
            if options.get(key) != want
        ]
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

    def _rows(self):
        return (r for e in self.experiments.values() for r in e.rows)

    def train_jobs(self) -> list[tuple[str, int]]:
        """Unique (run, seed) pairs over all experiments, in a stable order (a rule row trains itself)."""
        return list(dict.fromkeys((r.run, int(s)) for r in self._rows() if not r.rule for s in r.seeds))

    def rule_rows(self) -> list[Row]:
        """Rows produced by users' own rules (their rules must exist in the workflow)."""
        return [r for r in self._rows() if r.rule]

    def planned_for(self, run: str, bench: bool = False) -> list[dict[str, str]]:
        """The (experiment, row label) pairs that ask for training run (or benchmark) ``run``."""
        rows = (r for r in self._rows() if (r.bench if bench else r.run) == run)
        return [{"experiment": r.experiment, "row": r.label} for r in rows]

    def training_cost(self, run: str) -> float:
        """Rough relative cost of training run ``run`` once (see ``training_cost``)."""
        return training_cost(self.runs[run], next(r.resolved for r in self._rows() if r.run == run))


def slug(text: str) -> str:
    """Lower-case, [a-z0-9-] only: safe in paths and Snakemake wildcards."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_id(spec: dict, overrides: dict | None = None) -> str:
    """``<variant>_<backbone>_<dataset>_<protocol>_<hash>``, the spec hashed with its overrides
    canonical (``_canonical_overrides``, or ``overrides`` if given): a redundant one moves no id."""
    if "overrides" in spec:
        spec = {**spec, "overrides": _canonical_overrides(spec) if overrides is None else overrides}
    name = f"{slug(spec['variant'])}_{spec['backbone']}_{slug(spec['dataset'])}_{spec['protocol']}"
    return f"{name}_{_digest(spec)}"


def canonical_value(value):
    """A setting in one form: a whole float as an int (100.0 -> 100), tuples as lists, bools kept."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, (list, tuple)):
        return [canonical_value(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical_value(v) for k, v in value.items()}
    return value


def _canonical_overrides(spec: dict) -> dict:
    """``spec["overrides"]`` canonical, less None values and those equal to what the variant resolves
    to without overrides at width 1 (protocol switch, N/K/X, registry value, head default)."""
    overrides = {k: canonical_value(v) for k, v in (spec.get("overrides") or {}).items() if v is not None}
    if not overrides:
        return overrides
    try:
        base = resolve_variant(
            spec["variant"], backbone=spec.get("backbone"), protocol=spec.get("protocol") or "official"
        )
    except (ValueError, KeyError):
        return overrides
    known = {"classifier": base.classifier} | {k: getattr(base.protocol, k) for k in protocol_fields()}
    out = {}
    for key, value in overrides.items():
        default = known[key] if key in known else base.head_kwargs.get(key, head_default(base.head, key))
        if canonical_value(default) != value or isinstance(default, bool) != isinstance(value, bool):
            out[key] = value
    return out


def _schedule(value, schedules: dict, where: str) -> list[list[float]]:
    """A schedule as validated [lr, epochs] pairs; a name resolves in ``schedules``, else the released."""
    if isinstance(value, str):
        known = {**DEFAULT_SCHEDULES, **schedules}
        if value not in known:
            raise ValueError(f"{where}: unknown schedule {value!r}; defined schedules: {', '.join(known)}")
        value = known[value]
    try:
        return [[lr, ep] for lr, ep in parse_schedule(value)]
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _check_config(config: dict) -> None:
    """Experiment and dataset keys must be plain names (they become file names), seeds distinct
    (one run each), and every named schedule valid."""
    for section in ("experiments", "datasets"):
        for key in config.get(section) or {}:
            if not isinstance(key, str) or not _PLAIN_NAME.match(key):
                raise ValueError(
                    f"{section}: key {key!r} is not a plain name (letters, digits, '_', '-', '.'; not "
                    f"starting with '.'); it becomes a file name under results/"
                )
    exps = [
        (f"experiments.{n}.", e) for n, e in (config.get("experiments") or {}).items() if isinstance(e, dict)
    ]
    for where, seeds in [("defaults.seeds", (config.get("defaults") or {}).get("seeds"))] + [
        (f"{w}seeds", e.get("seeds")) for w, e in exps
    ]:
        if dup := sorted({s for s in seeds if list(seeds).count(s) > 1}) if seeds is not None else []:
            raise ValueError(
                f"{where}: seed(s) {dup} given more than once in {list(seeds)}; each seed is one run, "
                f"so give distinct seeds"
            )
    for where, table in [("schedules", config.get("schedules"))] + [
        (f"{w}schedules", e.get("schedules")) for w, e in exps
    ]:
        for name, schedule in (table or {}).items():
            _schedule(schedule, {}, f"{where}.{name}")  # every named schedule, used or not


def _check_dataset_key(dataset: str, config: dict, where: str) -> None:
    if dataset not in config.get("datasets", {}):
        raise ValueError(
            f"{where}: unknown dataset {dataset!r}; defined datasets: {', '.join(config.get('datasets', {}))}"
        )


def _resolve(row: dict, exp: dict, config: dict, where: str) -> tuple[dict, ResolvedVariant | None]:
    """Row settings, else the experiment's, else ``defaults`` (dicts merged key by key), and the
    variant's resolution if its schedule family had to be looked up."""
    defaults = config.get("defaults", {})
    spec = {key: row.get(key, exp.get(key, defaults.get(key))) for key in INHERITED_KEYS}
    if spec["lr_scaling"] is None:
        spec["lr_scaling"] = "linear"  # the released step size per image at any batch (gmsop.engine.config)
    for key in ("overrides", "augment"):
        spec[key] = {**defaults.get(key, {}), **exp.get(key, {}), **row.get(key, {})}
    spec["variant"] = row["variant"]
    _check_dataset_key(spec["dataset"], config, where)
    entry, at = config["datasets"][spec["dataset"]], f"datasets.{spec['dataset']}"
    if not isinstance(entry, dict) or "name" not in entry:
        raise ValueError(f"{at}: a dataset needs a 'name' (one of the registered datasets), got {entry!r}")
    try:
        spec["data"] = dataset_fingerprint(entry["name"], entry.get("options") or {})
    except ValueError as err:
        raise ValueError(f"{at}: {err}") from None
    resolved = None
    if spec["schedule"] is None:
        resolved = _variant_or_error(spec, where)
        spec["schedule"] = resolved.schedule_family
    schedules = {**(config.get("schedules") or {}), **(exp.get("schedules") or {})}
    spec["schedule"] = _schedule(spec["schedule"], schedules, where)
    return {k: spec[k] for k in SPEC_KEYS}, resolved


def _with_content(data: dict, key: str, config: dict, contents: dict[str, str | None]) -> dict:
    """A run's data fingerprint plus the content hash of dataset ``key``'s files (once per plan, in
    ``contents``); unchanged for generated data and a root that does not exist yet."""
    if key not in contents:
        entry = config["datasets"][key]
        root = entry.get("root")
        contents[key] = None
        if root is None or Path(root).expanduser().exists():
            try:
                contents[key] = content_fingerprint(entry["name"], root, entry.get("options") or {})
            except ValueError as err:
                raise ValueError(f"datasets.{key}: {err}") from None
    return data if contents[key] is None else {**data, "content": contents[key]}


def _variant_or_error(spec: dict, where: str) -> ResolvedVariant:
    """The registry's resolution of a row's variant (builds nothing); errors name the row."""
    try:
        width = float(spec.get("width_mult") or 1.0)
        return resolve_variant(spec["variant"], spec["backbone"], spec["protocol"], spec["overrides"], width)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


#: Per-image training cost relative to ResNet-18 with a first-order, single head at equal width,
#: measured on the embedded default (2-core CPU); used only to order jobs (``training_cost``).
BACKBONE_COST = {"resnet50": 2.5, "wrn36_2": 2.0}
SECOND_ORDER_COST = MIXTURE_COST = 1.5


def _flip_doubled(spec: dict) -> bool:
    """Whether a run spec's training set is flip-doubled (row ``augment`` over the dataset's)."""
    options = dict((spec.get("data") or {}).get("options") or {})
    if spec.get("augment"):
        options["augment"] = dict(spec["augment"])
    return flip_doubled(spec["data"]["name"], options)


def training_cost(spec: dict, resolved: ResolvedVariant | None = None) -> float:
    """Rough relative cost of training a run spec once: epochs x training images (x2 flip-doubled,
    1 if unknown) x the factors above; the workflow's job priority, so the longest runs start first."""
    resolved = resolved or _variant_or_error(spec, f"run {spec.get('variant')!r}")
    epochs = sum(int(e) for _, e in spec["schedule"])
    images = ((spec.get("data") or {}).get("options") or {}).get("n_train") or 1
    images *= 2 if _flip_doubled(spec) else 1  # the mirrored copy doubles an epoch
    cost = epochs * float(images) * BACKBONE_COST.get(resolved.backbone, 1.0)
    cost *= SECOND_ORDER_COST if resolved.second_order else 1
    return cost * (MIXTURE_COST if resolved.num_experts is not None else 1)  # not the single-CM Xd head


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
                f"experiments.{name}: every grid point has K > N ({skipped}), "
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


def _grid_points(exp: dict) -> tuple[list[tuple[int, int]], str]:
    """A grid experiment's (N, K) points in order, and those skipped because K > N, as text."""
    pairs = [(int(n), int(k)) for n in exp["n"] for k in exp["k"]]
    return [p for p in pairs if p[1] <= p[0]], ", ".join(f"N={n} K={k}" for n, k in pairs if k > n)


def _rule_row(where: str, raw: dict, exp: dict, config: dict, plan: Plan) -> dict:
    """The Row fields of a row whose metrics.json files a user's own rule writes (README "Add a variant")."""
    if unknown := sorted(set(raw) - set(RULE_ROW_KEYS)):
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
    label = raw.get("label") or rule
    return dict(
        label=label,
        run=rule_run_id(rule),
        bench="",
        variant=label,
        display=label,
        backbone="",
        protocol="",
        dataset=dataset,
        width_mult=None,
        settings={"rule": rule},
        paper=raw.get("paper"),
        rule=rule,
    )


def _planned_row(where: str, raw: dict, exp: dict, config: dict, plan: Plan) -> dict:
    """The Row fields of a row trained by gmsop, its spec and benchmark spec added to ``plan``."""
    if unknown := sorted(set(raw) - set(ROW_KEYS)):
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(ROW_KEYS)}")
    spec, facts = _resolve(raw, exp, config, where)
    spec["data"] = _with_content(spec["data"], spec["dataset"], config, plan.contents)
    facts = facts or _variant_or_error(spec, where)
    spec["backbone"] = facts.backbone
    overrides = _canonical_overrides(spec)
    rid = run_id(spec, overrides)
    plan.runs[rid] = spec
    batch = config.get("bench", {}).get("batch_size")  # null: each run's own batch
    bspec = {k: spec[k] for k in ("variant", "backbone", "protocol", "dataset", "width_mult")}
    bspec["overrides"] = {k: v for k, v in spec["overrides"].items() if k not in SPEED_NEUTRAL}
    bspec["batch_size"] = int(batch if batch is not None else spec["batch_size"])
    bid = run_id(bspec | {"schedule": None}, {k: v for k, v in overrides.items() if k not in SPEED_NEUTRAL})
    plan.benches[bid] = bspec
    return dict(
        label=raw.get("label") or spec["variant"],
        run=rid,
        bench=bid,
        variant=spec["variant"],
        display=facts.display_name,
        backbone=spec["backbone"],
        protocol=spec["protocol"],
        dataset=spec["dataset"],
        width_mult=float(spec["width_mult"] or 1.0),
        settings=spec,
        paper=raw.get("paper", spec["variant"]),
        num_experts=facts.num_experts,
        k=facts.k,
        alpha=facts.alpha,
        schedule_family=facts.schedule_family,
        resolved=facts,
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
    plan = Plan({}, {}, {}, config.get("datasets", {}))
    for name, exp in config.get("experiments", {}).items():
        if not exp.get("enabled", True):
            continue
        seeds = tuple(int(s) for s in exp.get("seeds", config.get("defaults", {}).get("seeds", [0])))
        rows = []
        for i, raw in enumerate(_rows_of(name, exp)):
            fields = _rule_row if "rule" in raw else _planned_row
            row = fields(f"experiments.{name}.rows[{i}]", raw, exp, config, plan)
            name_of = str(config["datasets"][row["dataset"]]["name"])
            rows.append(Row(experiment=name, index=i, seeds=seeds, dataset_name=name_of, **row))
        if not rows:
            raise ValueError(
                f"experiments.{name}: plans no run (no rows); give it rows or set enabled: false"
            )
        if skipped := _grid_points(exp)[1] if exp.get("kind") == "grid" else "":
            plan.notes.append(f"experiments.{name}: grid points skipped because K > N: {skipped}")
        labels = [r.label for r in rows]
        if dup := sorted({x for x in labels if labels.count(x) > 1}):
            raise ValueError(
                f"experiments.{name}: duplicate row label(s) {dup}; give each row a distinct 'label'"
            )
        plan.experiments[name] = Experiment(
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
    return plan


def check_data(plan: Plan) -> tuple[list[str], list[str]]:
    """``(missing_roots, errors)`` in the planned runs' data, found without building a dataset:
    unreadable files, and batches larger than the training set where its size is cheap to know."""
    missing, errors, sizes = [], [], {}
    for key in sorted({spec["dataset"] for spec in plan.runs.values()}):
        entry = plan.datasets[key]
        root = entry.get("root")
        if root is not None and not Path(root).expanduser().exists():
            missing.append(
                f"datasets.{key}.root: {root} does not exist (resolved: {Path(root).expanduser().absolute()})"
            )
            continue
        try:
            sizes[key] = train_size(entry["name"], root, entry.get("options") or {})
        except ValueError as err:  # an unreadable file, named with the reason
            errors.append(f"datasets.{key}: {err}")
    too_large: dict[tuple[str, int, int], list[str]] = {}  # (dataset, batch, images) -> rows
    for row in plan._rows():
        spec = plan.runs.get(row.run)
        n = None if spec is None else sizes.get(spec["dataset"])
        if n is not None and int(spec["batch_size"]) > n * (2 if _flip_doubled(spec) else 1):
            where = f"experiments.{row.experiment}.rows[{row.index}] ({row.label})"
            too_large.setdefault((spec["dataset"], int(spec["batch_size"]), n), []).append(where)
    for (dataset, batch, n), rows in too_large.items():
        more = f" and {len(rows) - 3} more rows" if len(rows) > 3 else ""
        errors.append(
            f"{', '.join(rows[:3])}{more}: batch_size {batch} is larger than the training set of "
            f"datasets.{dataset} ({n} images); every epoch would be empty"
        )
    return missing, errors


def describe_schema_error(err, schema: dict | None = None) -> str:
    """A config schema error (``jsonschema.ValidationError``) as one line: the location and the
    offending key or value; ``schema`` (the whole schema) lets an unknown key list those allowed."""
    # Of a oneOf/anyOf error, name the deepest error in the alternatives whose type the value has
    # (a schedule given as a list broke the list's rules, not the name's) and the rule it broke.
    inside = [e for e in err.context if not (e.validator == "type" and len(e.relative_path) == 0)]
    if inside and err.validator in ("oneOf", "anyOf"):
        branch = max(inside, key=lambda e: len(e.absolute_path))
        rule = f" ({err.schema['description']})" if err.schema.get("description") else ""
        return f"{_location(branch)}: {branch.message}{rule}"
    if err.validator in ("additionalProperties", "unevaluatedProperties"):
        found = re.findall(r"'([^']*)'", err.message.split("(")[-1])
        allowed = sorted(_schema_keys(err.schema, schema or {}))
        keys = ", ".join(repr(k) for k in found) or err.message
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"{_location(err)}: unknown key {keys}{hint}"
    return f"{_location(err)}: {err.message}"


def _location(err) -> str:
    """``experiments.table2.rows[3].schedule[0][0]``: where in the config an error is."""
    where = ""
    for part in err.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return where or "(top level)"


def _schema_keys(sub: dict, root: dict, depth: int = 0) -> set[str]:
    """The property names a (sub)schema allows, following allOf and local $refs."""
    if not isinstance(sub, dict) or depth > 5:
        return set()
    keys = set(sub.get("properties", {}))
    for part in sub.get("allOf", []):
        keys |= _schema_keys(part, root, depth + 1)
    ref = sub.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node = reduce(lambda n, k: n.get(k, {}) if isinstance(n, dict) else {}, ref[2:].split("/"), root)
        keys |= _schema_keys(node, root, depth + 1)
    return keys
