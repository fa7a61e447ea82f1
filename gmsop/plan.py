"""``gmsop plan``: what a workflow config will cost, in training jobs, images and GPU-hours.

    gmsop plan --config workflow/configs/paper-imagenet64.yaml --bench results/bench
    gmsop plan --config workflow/configs/paper-places365.yaml --device-check device_check.json
    gmsop plan --config workflow/configs/paper-imagenet64.yaml --assume-from-paper

What is counted. The config is planned by ``gmsop.experiments.make_plan`` (what the workflow runs),
so jobs are deduplicated exactly as the workflow dedupes them (``Plan.train_jobs``: one training
job per (run id, seed); a run two tables share trains once and is counted for the first row that
asks for it, the others show 0 new jobs). Per job: epochs from the row's resolved schedule (the
planner's), images per epoch from the dataset (the full release's training split for
``imagenet64`` and ``places365``, ``gmsop.data.imagenet64.FULL_TRAIN`` / ``places365.FULL_TRAIN``;
the option for ``synthetic``; ``train_size`` for ``npz``), doubled for a flip-doubled row
(``augment.flip_double``), and rounded down to whole batches as training drops the last
incomplete batch. Hours = images / training img/s / 3600: training steps only (no evaluation
passes, no data loading beyond what a measurement included, no benchmark jobs).

Where a speed comes from, per row (every row says which and from what):

* ``measured``: a measurement of the row's model (variant, backbone, width, protocol and the
  overrides that change computation) at the row's input size. A ``results/bench`` file whose
  ``run.id`` is the row's planned benchmark is the most exact; otherwise any bench file or
  device-check record of the same model (its batch size is stated when it differs).
* ``published`` (only with ``--assume-from-paper``): the paper's own speed for the row's model.
* ``extrapolated``: the same model at another input size, or another model, scaled by the ratio
  of forward FLOPs per image (``gmsop.flops``, each at its own input size and class count):
  ``img/s = ref img/s x ref FLOPs / row FLOPs``. The reference is taken from the first source
  that has any measurement at the row's width (``--device-check``, then ``--bench``, then the
  paper), so one row's speed comes from one device; within it: the same model, else the same
  head on another backbone, else a model of the same kind (second-order or not, mixture or
  not) with the nearest FLOPs, else of the same order, else the nearest FLOPs. Only references
  at the row's ``width_mult`` are used: FLOPs do not predict a scaled-down net's speed from a
  full-width one.
* ``no measurement``: nothing at the row's width. The row is listed, its hours are empty and
  excluded from the total, and the total says how many jobs that leaves out. No number is made up.

``--assume-from-paper`` adds the only GPU speeds the paper publishes as a labelled source:
training img/s on the authors' GTX 1080 (MatConvNet, 64x64, batch 256, ResNet-18), quoted in its
Sec. 3.2 for ResNet-18-512d, GM-GAP-16-8, SR-SOP and Parametric SR-SOP
(``gmsop.aggregate.paper_values.TRAIN_FPS``); every other row is extrapolated from them by FLOPs.

Files read. Bench files: ``gmsop.formats.read_bench`` (``results/bench/*.json``, written by the
workflow's benchmark jobs or ``gmsop bench --out``). Device checks: ``device_check.json`` of
``gmsop check-device``, its ``throughput`` part (:func:`read_device_check` says what is read).
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Measurement", "RowEstimate", "PlanError", "read_device_check", "read_bench_files", "paper_measurements",
           "estimate", "dataset_facts", "main"]

#: What is read from ``gmsop check-device``'s device_check.json (gmsop.device_check.report writes
#: it; the throughput part, gmsop.device_check.parts.throughput, fills its figures): one place, so
#: a change of that format is one edit here (see :func:`read_device_check`).
DEVICE_CHECK_KEYS = {"format_prefix": "gmsop-device-check/", "part": "throughput"}

#: Source kinds in the order a row's reference is looked for (an exact planned benchmark first).
SOURCE_ORDER = ("device_check", "bench", "paper")

PAPER_DEVICE = "NVIDIA GeForce GTX 1080 (the paper's PC, MatConvNet)"


class PlanError(ValueError):
    """A bad input file, key or value, named in the message."""


@dataclass(frozen=True)
class Measurement:
    """One measured training speed of one model at one input size on one device."""

    variant: str  # display name ("ResNet-50-512d")
    backbone: str
    input_size: tuple[int, int, int]  # (C, H, W)
    train_img_s: float
    kind: str  # device_check | bench | paper
    source: str  # the file (or the paper's sentence) it was read from
    device: str  # cuda | cpu | gpu
    device_name: str
    batch_size: int | None = None
    width_mult: float = 1.0
    protocol: str = "official"
    overrides: tuple = ()  # sorted (key, value) pairs that change computation
    num_classes: int = 1000
    flops_per_image: float | None = None  # at input_size, if the file says
    bench_id: str | None = None  # run.id of a workflow benchmark file

    @property
    def is_gpu(self) -> bool:
        return self.device in ("cuda", "gpu") or self.kind == "paper"

    def where(self) -> str:
        c, h, w = self.input_size
        batch = f", batch {self.batch_size}" if self.batch_size else ""
        return f"{self.source} ({self.device_name}{batch}, width {self.width_mult:g}, input {c}x{h}x{w})"


@dataclass
class RowEstimate:
    config: str
    experiment: str
    row: str
    model: str  # display name + backbone
    width_mult: float
    input: str  # "3x64x64"
    batch_size: int
    seeds: int
    jobs: int  # rows x seeds of this row
    new_jobs: int  # jobs not already counted for an earlier row (the workflow trains each once)
    epochs: int
    images_per_epoch: int | None
    images: int | None  # new_jobs x epochs x images_per_epoch
    train_img_s: float | None
    speed: str  # measured | published | extrapolated | no measurement | no data size
    speed_from: str  # which measurement, where, and how it was scaled
    device_name: str | None
    gpu: bool | None
    hours: float | None  # new_jobs x hours_per_job
    hours_per_job: float | None = None  # one seed's training (what a cluster job's time limit must cover)
    data_note: str = ""


# ---------------------------------------------------------------------------------------------
# Reading measurements


def _speed_overrides(overrides: dict | None) -> tuple:
    """The overrides that change computation, in one hashable form (the planner's rule)."""
    from gmsop.experiments import canonical_value
    from gmsop.protocol import SPEED_NEUTRAL

    out = {k: canonical_value(v) for k, v in (overrides or {}).items()
           if k not in SPEED_NEUTRAL and k != "width_mult" and v is not None}
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in out.items()))


def _display(variant: str, backbone: str | None, where: str) -> tuple[str, str]:
    from gmsop.registry import resolve_variant

    try:
        r = resolve_variant(variant, backbone=backbone)
    except ValueError as err:
        raise PlanError(f"{where}: {err}") from None
    return r.display_name, r.backbone


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise PlanError(f"{where} must be a positive number, got {value!r}")
    return float(value)


def read_bench_files(paths: list[str | Path]) -> list[Measurement]:
    """Measurements from bench.json files (``gmsop.formats.read_bench``) and folders (and
    subfolders) of them."""
    from gmsop.formats import ResultFileError, bench_files, read_bench

    for p in map(Path, paths):
        if not p.exists():
            raise PlanError(f"--bench {p}: no such file or folder")
    out = []
    for f in bench_files(paths):
        try:
            b = read_bench(f)
        except ResultFileError as err:
            raise PlanError(f"--bench: {err}") from None
        overrides = dict(b.get("overrides") or {})
        settings = (b.get("run") or {}).get("settings") or {}
        width = float(overrides.get("width_mult", settings.get("width_mult") or 1.0))
        display, backbone = _display(b["variant"], b["backbone"], f"{f}: key 'variant'")
        out.append(Measurement(
            variant=display, backbone=backbone, input_size=tuple(int(v) for v in b["input_size"]),
            train_img_s=_positive(b["train_img_s"], f"{f}: key 'train_img_s'"), kind="bench", source=str(f),
            device=str(b["device"]), device_name=str(b.get("device_name") or b["device"]),
            batch_size=int(b["batch_size"]), width_mult=width, protocol=str(b.get("protocol") or "official"),
            overrides=_speed_overrides(overrides), num_classes=int(b.get("num_classes") or 1000),
            flops_per_image=b.get("flops_per_image"), bench_id=(b.get("run") or {}).get("id"),
        ))
    return out


def _read_text_as(path: Path, option: str, kind: str, parse, parse_errors: tuple) -> Any:
    """``parse`` of the file's text; a missing or unreadable file is a PlanError naming ``option``."""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{option} {path}: file not found") from None
    except (OSError, UnicodeDecodeError, *parse_errors) as err:
        raise PlanError(f"{option} {path}: not readable {kind} ({err})") from None


def read_device_check(path: str | Path) -> list[Measurement]:
    """Measurements from ``gmsop check-device``'s ``device_check.json`` (gmsop.device_check.report).

    What is read (the one place this layout is read; :data:`DEVICE_CHECK_KEYS`)::

        {"format": "gmsop-device-check/1",
         "sizes": {"width_mult": 1.0, "image_size": 64, "batch_size": 256, "bench_classes": 1000},
         "env": {"device": "cuda", "device_name": "NVIDIA H200"},
         "options": {"tiny": false},
         "parts": [{"name": "throughput", "status": "passed",
                    "figures": {"variants": [{"variant": "GM-SOP-16-8", "train_img_s": 1234.5,
                                              "flops_per_image": 1.1e9}, ...]}}, ...]}

    Every variant is measured on the ResNet-18 backbone under the official protocol, at
    ``sizes`` (input 3 x image_size x image_size). A variant the check could not run (an
    ``error`` instead of ``train_img_s``) is skipped; a check run with ``--tiny`` is read but its
    device is labelled so (tiny sizes prove code paths, not speeds). Anything else missing or wrong
    raises :class:`PlanError` naming the file and the key.
    """
    path = Path(path)
    doc = _read_text_as(path, "--device-check", "JSON", json.loads, (json.JSONDecodeError,))
    k = DEVICE_CHECK_KEYS
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith(k["format_prefix"]):
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise PlanError(f"--device-check {path}: key 'format' must be {k['format_prefix']}<version> "
                        f"(a device_check.json of gmsop check-device), got {got!r}")

    def need(obj: Any, key: str, where: str, kind: type = dict) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise PlanError(f"--device-check {path}: key '{where}{key}' is missing")
        if not isinstance(obj[key], kind):
            what = getattr(kind, "__name__", "a number")
            raise PlanError(f"--device-check {path}: key '{where}{key}' must be {what}, got {obj[key]!r}")
        return obj[key]

    sizes, env = need(doc, "sizes", ""), need(doc, "env", "")
    parts = need(doc, "parts", "", list)
    idx = next((i for i, p in enumerate(parts) if isinstance(p, dict) and p.get("name") == k["part"]), None)
    if idx is None:
        raise PlanError(f"--device-check {path}: no {k['part']!r} part in 'parts' (run gmsop check-device with it)")
    where = f"parts[{idx}].figures."
    rows = need(need(parts[idx], "figures", f"parts[{idx}]."), "variants", where, list)
    side = int(_positive(need(sizes, "image_size", "sizes.", int), f"--device-check {path}: key 'sizes.image_size'"))
    width = _positive(need(sizes, "width_mult", "sizes.", (int, float)),
                      f"--device-check {path}: key 'sizes.width_mult'")
    batch = int(need(sizes, "batch_size", "sizes.", int))
    classes = int(sizes.get("bench_classes") or 1000)
    device = str(env.get("device") or "cuda")
    name = str(env.get("device_name") or device)
    if (doc.get("options") or {}).get("tiny"):
        name += " (check-device --tiny: sizes that prove code paths, not speeds)"
    out = []
    for i, rec in enumerate(rows):
        at = f"{where}variants[{i}]"
        if not isinstance(rec, dict) or "variant" not in rec:
            raise PlanError(f"--device-check {path}: key '{at}.variant' is missing")
        if rec.get("train_img_s") is None:  # the check could not run this variant (its "error" says why)
            continue
        display, backbone = _display(str(rec["variant"]), None, f"--device-check {path}: key '{at}.variant'")
        flops = rec.get("flops_per_image")
        out.append(Measurement(
            variant=display, backbone=backbone, input_size=(3, side, side),
            train_img_s=_positive(rec["train_img_s"], f"--device-check {path}: key '{at}.train_img_s'"),
            kind="device_check", source=str(path), device=device, device_name=name, batch_size=batch,
            width_mult=width, num_classes=classes,
            flops_per_image=_positive(flops, f"--device-check {path}: key '{at}.flops_per_image'") if flops else None,
        ))
    return out


def paper_measurements() -> list[Measurement]:
    """The paper's published training speeds (Sec. 3.2: GTX 1080, 64x64, batch 256, ResNet-18)."""
    from gmsop.aggregate.paper_values import TRAIN_FPS

    return [Measurement(variant=v, backbone=b, input_size=(3, 64, 64), train_img_s=float(fps), kind="paper",
                        source=f"the paper, {quote}", device="gpu", device_name=PAPER_DEVICE, batch_size=256)
            for (v, b), (fps, quote) in TRAIN_FPS.items()]


# ---------------------------------------------------------------------------------------------
# Dataset facts without building the dataset


@dataclass(frozen=True)
class DataFacts:
    train_images: int | None  # stored training images (before flip doubling)
    input_size: tuple[int, int] | None  # (H, W) the model sees
    num_classes: int | None
    flip_double: bool
    note: str


def dataset_facts(entry: dict, row_augment: dict | None = None) -> DataFacts:
    """Training images, input size and classes of a config's dataset entry, with a row's
    ``augment`` applied as training applies it (it replaces the dataset's ``augment`` option),
    known without building the dataset or reading its files."""
    from gmsop.data import augment_spec, dataset_options, train_size

    name = entry["name"]
    options = dict(entry.get("options") or {})
    if row_augment:
        options["augment"] = dict(row_augment)
    opts = {**dataset_options(name), **{k: v for k, v in options.items() if v is not None}}
    spec = augment_spec(name, options)  # through the dataset's presets, as its builder resolves it
    if name == "synthetic":
        size = (int(opts["size"]),) * 2
        return DataFacts(train_size(name, entry.get("root"), options), spec.output_size(size, train=True),
                         int(opts["classes"]), spec.flip_double, "generated (option n_train)")
    if name == "imagenet64":
        from gmsop.data.imagenet64 import FULL_TRAIN

        size = (int(opts["size"]),) * 2
        full = int(opts["num_classes"]) == 1000
        return DataFacts(FULL_TRAIN if full else None, spec.output_size(size, train=True), int(opts["num_classes"]),
                         spec.flip_double, "the full release's training split" if full else
                         "a class subset: its size is known only from the files")
    if name == "places365":
        from gmsop.data.places365 import FULL_TRAIN

        size = (int(opts["size"]),) * 2
        return DataFacts(FULL_TRAIN, spec.output_size(size, train=True), 365, spec.flip_double,
                         "the full release's training split")
    n = train_size(name, entry.get("root"), options)
    return DataFacts(n, None, None, bool(spec and spec.flip_double),
                     f"dataset {name!r}: input size not known without building it")


# ---------------------------------------------------------------------------------------------
# FLOPs and matching


@functools.lru_cache(maxsize=None)
def _flops(variant: str, backbone: str, protocol: str, overrides: tuple, width: float,
           input_size: tuple[int, int, int], num_classes: int) -> float:
    """Forward FLOPs per image of one model (built on the CPU, counted by gmsop.flops)."""
    import torch

    from gmsop.flops import count_flops
    from gmsop.registry import build_model

    kwargs = {k: json.loads(v) for k, v in overrides}
    if width != 1.0:
        kwargs["width_mult"] = width
    with torch.no_grad():
        model = build_model(variant, backbone=backbone, num_classes=num_classes, protocol=protocol, **kwargs)
        return float(count_flops(model, input_size=input_size))


def _measurement_flops(m: Measurement) -> float:
    if m.flops_per_image:
        return float(m.flops_per_image)
    return _flops(m.variant, m.backbone, m.protocol, m.overrides, m.width_mult, m.input_size, m.num_classes)


@functools.lru_cache(maxsize=None)
def _kind(variant: str, backbone: str) -> tuple[str, bool, bool]:
    """(the head its name fixes, second order, mixture) of a model: "ResNet-18-512d" on resnet18 and
    "ResNet-50-512d" on resnet50 have the same head."""
    from gmsop.registry import resolve_variant

    r = resolve_variant(variant, backbone=backbone)
    # mixture: several components (the single-CM Xd head costs what a single head costs)
    return f"{r.head} {json.dumps(r.variant.kwargs, sort_keys=True)}", r.second_order, r.num_experts is not None


@dataclass
class _RowModel:
    variant: str
    backbone: str
    protocol: str
    overrides: tuple
    width: float
    input_size: tuple[int, int, int]
    num_classes: int
    batch_size: int
    bench_id: str

    def same_model(self, m: Measurement) -> bool:
        return (m.variant, m.backbone, m.protocol, m.overrides) == (self.variant, self.backbone, self.protocol,
                                                                    self.overrides) and _same_width(m, self)

    def flops(self) -> float:
        return _flops(self.variant, self.backbone, self.protocol, self.overrides, self.width, self.input_size,
                      self.num_classes)


def _same_width(m: Measurement, row: _RowModel) -> bool:
    return math.isclose(float(m.width_mult), float(row.width), rel_tol=1e-9)


def _fmt_size(size) -> str:
    return "x".join(str(int(v)) for v in size)


def _speed_for(row: _RowModel, measurements: list[Measurement]) -> tuple[float | None, str, str, Measurement | None]:
    """(img/s, status, explanation, reference) of one row."""
    exact = [m for m in measurements if m.kind == "bench" and m.bench_id and m.bench_id == row.bench_id]
    if exact:
        m = exact[0]
        batch = "" if m.batch_size in (None, row.batch_size) else f"; the row trains at batch {row.batch_size}"
        return m.train_img_s, "measured", f"its planned benchmark {m.where()}{batch}", m
    groups = [[m for m in measurements if m.kind == kind and _same_width(m, row)] for kind in SOURCE_ORDER]
    group = next((g for g in groups if g), None)
    if group is None:
        widths = sorted({m.width_mult for m in measurements})
        have = f" (measurements exist at width {', '.join(f'{w:g}' for w in widths)})" if widths else ""
        return None, "no measurement", f"nothing measured at width {row.width:g}{have}", None
    same = [m for m in group if row.same_model(m)]
    at_size = [m for m in same if m.input_size == row.input_size]
    if at_size:
        m = next((x for x in at_size if x.batch_size == row.batch_size), at_size[0])
        batch = "" if m.batch_size in (None, row.batch_size) else f"; the row trains at batch {row.batch_size}"
        # the paper's own number for this model is "published": measured, but not by us
        return m.train_img_s, "published" if m.kind == "paper" else "measured", f"{m.where()}{batch}", m
    row_flops = row.flops()
    if same:
        m, how = same[0], "the same model at another input size"
    else:
        name, second, mixture = _kind(row.variant, row.backbone)
        kinds = {id(m): _kind(m.variant, m.backbone) for m in group}
        tiers = [
            ([m for m in group if kinds[id(m)][0] == name], "the same head on another backbone"),
            ([m for m in group if kinds[id(m)][1:] == (second, mixture)],
             f"the nearest in FLOPs of the same kind ({'second' if second else 'first'}-order, "
             f"{'mixture' if mixture else 'single head'})"),
            ([m for m in group if kinds[id(m)][1] == second], f"the nearest in FLOPs of the same order "
                                                              f"({'second' if second else 'first'}-order)"),
            (group, "the nearest in FLOPs"),
        ]
        cands, how = next((t for t in tiers if t[0]), tiers[-1])
        m = min(cands, key=lambda x: (abs(math.log(_measurement_flops(x) / row_flops)), x.variant))
    ref_flops = _measurement_flops(m)
    img_s = m.train_img_s * ref_flops / row_flops
    text = (f"{m.variant} ({m.backbone}) at {m.train_img_s:,.0f} img/s, {how}: {m.where()}; x FLOPs ratio "
            f"{ref_flops / 1e9:.3g}/{row_flops / 1e9:.3g} GFLOPs (input {_fmt_size(m.input_size)} -> "
            f"{_fmt_size(row.input_size)})")
    return img_s, "extrapolated", text, m


# ---------------------------------------------------------------------------------------------
# The estimate


def load_config(path: str | Path) -> dict:
    """A workflow config file (YAML), checked against the workflow's schema when it is here."""
    import yaml

    path = Path(path)
    config = _read_text_as(path, "--config", "YAML", yaml.safe_load, (yaml.YAMLError,))
    if not isinstance(config, dict):
        raise PlanError(f"--config {path}: expected a mapping of config keys, got {type(config).__name__}")
    schema_file = _repo_root() / "workflow" / "schemas" / "config.schema.yaml"
    if schema_file.exists():
        try:
            import jsonschema
        except ImportError:  # pragma: no cover - jsonschema comes with snakemake and the test extra
            return config
        from gmsop.experiments import describe_schema_error

        schema = yaml.safe_load(schema_file.read_text())
        err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
        if err is not None:
            raise PlanError(f"--config {path}: config error at {describe_schema_error(err, schema)}")
    return config


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def default_config() -> Path:
    """``config.yaml`` in the working directory, else the embedded default beside the Snakefile."""
    here = Path("config.yaml")
    return here if here.exists() else _repo_root() / "config.yaml"


def estimate(configs: list[tuple[str, dict]], measurements: list[Measurement]) -> list[RowEstimate]:
    """One :class:`RowEstimate` per planned row (user rule rows excluded: gmsop does not train them).
    Training jobs are deduplicated over all ``configs`` in order (one results folder)."""
    from gmsop.experiments import make_plan
    from gmsop.plugins import load_plugins

    seen: set[tuple[str, int]] = set()
    out: list[RowEstimate] = []
    for name, config in configs:
        try:
            load_plugins(config.get("plugins", []))
            plan = make_plan(config)
        except (ValueError, ImportError) as err:
            raise PlanError(f"--config {name}: {err}") from None
        jobs = set(plan.train_jobs())
        for exp in plan.experiments.values():
            for row in exp.rows:
                if row.rule:
                    continue
                spec = plan.runs[row.run]
                new = [s for s in row.seeds if (row.run, int(s)) not in seen]
                assert all((row.run, int(s)) in jobs for s in new)
                seen.update((row.run, int(s)) for s in row.seeds)
                out.append(_estimate_row(name, plan, exp.name, row, spec, len(new), measurements))
        unplanned = jobs - seen
        assert not unplanned, f"rows missed training jobs {sorted(unplanned)[:3]}"
    return out


def _estimate_row(config: str, plan, experiment: str, row, spec: dict, new_jobs: int,
                  measurements: list[Measurement]) -> RowEstimate:
    facts = dataset_facts(plan.datasets[spec["dataset"]], spec.get("augment"))
    batch = int(spec["batch_size"])
    epochs = sum(int(ep) for _, ep in spec["schedule"])
    per_epoch = None
    if facts.train_images is not None:
        samples = facts.train_images * (2 if facts.flip_double else 1)
        per_epoch = samples // batch * batch  # training drops the last incomplete batch
    images = new_jobs * epochs * per_epoch if per_epoch is not None else None
    bspec = plan.benches[row.bench]
    width = float(spec.get("width_mult") or 1.0)
    input_size = (3, *facts.input_size) if facts.input_size else None
    base = dict(config=config, experiment=experiment, row=row.label, model=f"{row.display} ({row.backbone})",
                width_mult=width, input=_fmt_size(input_size) if input_size else "?", batch_size=batch,
                seeds=len(row.seeds), jobs=len(row.seeds), new_jobs=new_jobs, epochs=epochs,
                images_per_epoch=per_epoch, images=images, data_note=facts.note)
    if input_size is None or per_epoch is None:
        return RowEstimate(**base, train_img_s=None, speed="no data size", speed_from=facts.note, device_name=None,
                           gpu=None, hours=None)
    model = _RowModel(variant=spec["variant"], backbone=row.backbone, protocol=spec["protocol"],
                      overrides=_speed_overrides(bspec["overrides"]), width=width, input_size=input_size,
                      num_classes=int(facts.num_classes or 1000), batch_size=batch, bench_id=row.bench)
    model.variant, _ = _display(model.variant, model.backbone, f"{config}: experiments.{experiment} row {row.label!r}")
    img_s, status, text, ref = _speed_for(model, measurements)
    per_job = epochs * per_epoch / img_s / 3600 if img_s else None
    return RowEstimate(**base, train_img_s=img_s, speed=status, speed_from=text,
                       device_name=ref.device_name if ref else None, gpu=ref.is_gpu if ref else None,
                       hours=new_jobs * per_job if per_job is not None else None, hours_per_job=per_job)


def summarize(rows: list[RowEstimate]) -> tuple[list[dict], dict]:
    """Per (config, experiment) and overall: jobs, new jobs, images, hours, jobs without a speed."""
    groups: dict[tuple[str, str], list[RowEstimate]] = {}
    for r in rows:
        groups.setdefault((r.config, r.experiment), []).append(r)

    def agg(rs: list[RowEstimate]) -> dict:
        counted = [r for r in rs if r.hours is not None]
        missing = [r for r in rs if r.hours is None and r.new_jobs]
        return {
            "rows": len(rs),
            "jobs": sum(r.jobs for r in rs),
            "new_jobs": sum(r.new_jobs for r in rs),
            "images": sum(r.images or 0 for r in rs),
            "hours": sum(r.hours for r in counted),
            "jobs_measured": sum(r.new_jobs for r in counted if r.speed == "measured"),
            "jobs_published": sum(r.new_jobs for r in counted if r.speed == "published"),
            "jobs_extrapolated": sum(r.new_jobs for r in counted if r.speed == "extrapolated"),
            "jobs_without_speed": sum(r.new_jobs for r in missing),
            "rows_without_speed": sum(1 for r in missing),
            "gpu_only": all(r.gpu for r in counted) if counted else None,
            "devices": sorted({r.device_name for r in counted if r.device_name}),
        }

    per_exp = [{"config": c, "experiment": e, **agg(rs)} for (c, e), rs in groups.items()]
    return per_exp, agg(rows)


# ---------------------------------------------------------------------------------------------
# Output


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    for scale, word in ((1e9, "billion"), (1e6, "million")):
        if n >= scale:
            return f"{n / scale:,.2f} {word}"
    return f"{n:,}"


def _hours(h: float | None) -> str:
    if h is None:
        return "-"
    return f"{h:,.0f}" if h >= 100 else f"{h:.1f}" if h >= 1 else f"{h:.2g}"


def _hours_word(total: dict) -> str:
    return "GPU-hours" if total["gpu_only"] else "device-hours"


def total_line(total: dict) -> str:
    word = _hours_word(total)
    devices = "; ".join(total["devices"]) or "none"
    line = (f"Total: {total['new_jobs']} training jobs, {_count(total['images'])} images, "
            f"{_hours(total['hours'])} {word} on {devices} "
            f"({total['jobs_measured']} jobs measured, "
            + (f"{total['jobs_published']} at the paper's published speed, " if total["jobs_published"] else "")
            + f"{total['jobs_extrapolated']} extrapolated)")
    if total["jobs_without_speed"]:
        line += (f"; {total['jobs_without_speed']} jobs ({total['rows_without_speed']} rows) have no measurement "
                 f"and are NOT in this total")
    if len(total["devices"]) > 1:
        line += "; speeds from more than one device: the sum is not one machine's time"
    return line


def _table_rows(rows: list[RowEstimate], several_configs: bool) -> tuple[list[dict], list[str]]:
    notes: list[str] = []
    index: dict[str, int] = {}
    table = []
    for r in rows:
        key = f"{r.speed}: {r.speed_from}"
        if key not in index:
            notes.append(key)
            index[key] = len(notes)
        rec = {}
        if several_configs:
            rec["config"] = Path(r.config).name
        rec |= {
            "experiment": r.experiment, "row": r.row, "model": r.model, "width": f"{r.width_mult:g}", "input": r.input,
            "batch": r.batch_size, "jobs": f"{r.new_jobs}/{r.jobs}", "epochs": r.epochs,
            "img/epoch": f"{r.images_per_epoch:,}" if r.images_per_epoch is not None else "?",
            "images": _count(r.images),
            "img/s": f"{r.train_img_s:,.0f}" if r.train_img_s else "-",
            "speed": f"{r.speed} [{index[key]}]",
            "hours": _hours(r.hours),
            "h/job": _hours(r.hours_per_job),
        }
        table.append(rec)
    return table, notes


def format_text(rows: list[RowEstimate], configs: list[str]) -> str:
    import pandas as pd

    per_exp, total = summarize(rows)
    table, notes = _table_rows(rows, len(configs) > 1)
    out = [f"gmsop plan: {', '.join(configs)}", "",
           "Per row (jobs: new training jobs / rows x seeds, a run shared with an earlier row trains once; "
           "hours: of the new jobs, h/job: one job; training steps only)",
           pd.DataFrame(table).to_string(index=False), "", "Speeds:"]
    out += [f"  [{i}] {n}" for i, n in enumerate(notes, 1)]
    exp_table = [{**({"config": Path(e["config"]).name} if len(configs) > 1 else {}), "experiment": e["experiment"],
                  "rows": e["rows"], "jobs": e["jobs"], "new jobs": e["new_jobs"],
                  "images": _count(e["images"]), _hours_word(total): _hours(e["hours"]),
                  "jobs without speed": e["jobs_without_speed"]} for e in per_exp]
    out += ["", "Per experiment", pd.DataFrame(exp_table).to_string(index=False), "", total_line(total)]
    return "\n".join(out) + "\n"


def format_csv(rows: list[RowEstimate]) -> str:
    import pandas as pd

    per_exp, total = summarize(rows)
    recs = [{"level": "row", **asdict(r)} for r in rows]
    recs += [{"level": "experiment", **{k: v for k, v in e.items() if k != "devices"},
              "device_name": "; ".join(e["devices"])} for e in per_exp]
    recs.append({"level": "total", "config": "", "experiment": "", **{k: v for k, v in total.items() if k != "devices"},
                 "device_name": "; ".join(total["devices"]), "speed_from": total_line(total)})
    return pd.DataFrame(recs).to_csv(index=False)


def format_json(rows: list[RowEstimate], configs: list[str]) -> str:
    from gmsop.atomic import to_json

    per_exp, total = summarize(rows)
    return to_json({"configs": configs, "rows": [asdict(r) for r in rows], "experiments": per_exp,
                    "total": {**total, "line": total_line(total)}})


# ---------------------------------------------------------------------------------------------
# Command line


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gmsop plan",
        description="Plan a workflow config in training jobs, images and GPU-hours, before running it. "
        "Jobs are deduplicated as the workflow does (one per run and seed); epochs come from each row's "
        "resolved schedule, images per epoch from the dataset (full release sizes for imagenet64 and "
        "places365, doubled for flip-doubled rows, whole batches). Each row's training speed is measured "
        "(a bench file or device-check record of that model at that input size), extrapolated (another "
        "input size or model at the same width, scaled by the FLOPs ratio; the row says from what), or "
        "missing ('no measurement': left out of the total, which counts them). Hours count training steps "
        "only.",
        epilog="Examples:\n"
        "  gmsop plan                                   # the embedded default, speeds from results/bench\n"
        "  gmsop plan --config workflow/configs/paper-imagenet64.yaml --assume-from-paper\n"
        "  gmsop plan --config workflow/configs/paper-places365.yaml --device-check device_check.json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="workflow config (YAML) as given to snakemake --configfile ... --replace-workflow-config; "
                   "repeatable (jobs shared between configs count once). Default: ./config.yaml, else the "
                   "embedded default")
    p.add_argument("--device-check", action="append", default=[], metavar="FILE",
                   help="device_check.json written by 'gmsop check-device' (its throughput part: train img/s of "
                   "every Table-2 variant on ResNet-18 at the check's sizes); repeatable; looked at first")
    p.add_argument("--bench", action="append", default=None, metavar="DIR_OR_FILE",
                   help="bench.json files or folders of them (gmsop.formats.read_bench); repeatable. Default: "
                   "results/bench if it exists")
    p.add_argument("--assume-from-paper", action="store_true",
                   help="also use the training speeds the paper's Sec. 3.2 publishes for four ResNet-18 variants "
                   "(GTX 1080, 64x64, batch 256; gmsop.aggregate.paper_values.TRAIN_FPS) as a labelled source, "
                   "after any file; other rows are extrapolated from them by FLOPs")
    p.add_argument("--format", choices=["text", "csv", "json"], default="text",
                   help="text: tables and a total line; csv: one line per row, experiment and total; json "
                   "(default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        paths = args.config or [str(default_config())]
        configs = [(p, load_config(p)) for p in paths]
        measurements: list[Measurement] = []
        for f in args.device_check:
            measurements += read_device_check(f)
        bench = args.bench if args.bench is not None else (["results/bench"] if Path("results/bench").is_dir() else [])
        measurements += read_bench_files(bench)
        if args.assume_from_paper:
            measurements += paper_measurements()
        rows = estimate(configs, measurements)
    except PlanError as err:
        print(f"gmsop plan: error: {err}", file=sys.stderr)
        return 2
    if args.format == "csv":
        sys.stdout.write(format_csv(rows))
    elif args.format == "json":
        sys.stdout.write(format_json(rows, paths))
    else:
        sys.stdout.write(format_text(rows, paths))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
