"""``gmsop plan``: what a workflow config costs in training jobs, images and hours.

A row costs new jobs x epochs x images per epoch / training img/s (training steps only); a run
several rows share counts once. Each speed says where it comes from: ``measured`` (a bench file or
a ``gmsop check-device`` record of the row's model at its input size), ``published`` (the paper's
Sec. 3.2 speed, ``--assume-from-paper``), ``extrapolated`` (ref img/s x ref FLOPs / row FLOPs, the
ref at the row's width: the same model first, else the one nearest in FLOPs; your measurements
first, else the paper's) or ``no measurement`` (left out of the total, counted).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from gmsop.atomic import to_json
from gmsop.data import augment_spec, dataset_options, train_size
from gmsop.data.imagenet64 import FULL_TRAIN as IMAGENET_TRAIN
from gmsop.data.places365 import FULL_TRAIN as PLACES_TRAIN
from gmsop.experiments import canonical_value, describe_schema_error, make_plan
from gmsop.flops import count_flops
from gmsop.formats import ResultFileError, bench_files, read_bench
from gmsop.paper_values import TRAIN_FPS
from gmsop.plugins import load_plugins
from gmsop.protocol import SPEED_NEUTRAL
from gmsop.registry import build_model, resolve_variant

PAPER_DEVICE = "NVIDIA GeForce GTX 1080 (the paper's PC, MatConvNet)"
_REPO = Path(__file__).resolve().parents[1]


class PlanError(ValueError):
    """A bad input file, key or value, named in the message."""


@dataclass(frozen=True)
class Measurement:
    """One training speed of one model at one input size on one device."""

    model: tuple  # (display name, backbone, protocol, overrides that change computation)
    width_mult: float
    input_size: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    batch_size: int
    train_img_s: float
    source: str  # the file (or the paper's sentence) it was read from
    device_name: str
    gpu: bool
    paper: bool = False

    def flops(self) -> float:
        return _flops(self.model, self.width_mult, self.input_size, self.num_classes)

    def where(self) -> str:
        return (
            f"{self.source} ({self.device_name}, batch {self.batch_size}, width {self.width_mult:g}, "
            f"input {_fmt_size(self.input_size)})"
        )


@dataclass
class RowEstimate:
    config: str
    experiment: str
    row: str
    model: str  # display name + backbone
    width_mult: float
    input: str  # "3x64x64"
    batch_size: int
    jobs: int  # seeds of this row
    new_jobs: int  # jobs not already counted for an earlier row (the workflow trains each once)
    epochs: int
    images_per_epoch: int | None
    images: int | None  # new_jobs x epochs x images_per_epoch
    train_img_s: float | None = None
    speed: str = "no data size"  # measured | published | extrapolated | no measurement | no data size
    speed_from: str = ""  # which measurement, where, and how it was scaled
    device_name: str | None = None
    gpu: bool | None = None
    hours: float | None = None  # new_jobs x hours_per_job
    hours_per_job: float | None = None  # one seed's training (what a cluster job's time limit must cover)


def _speed_overrides(overrides: dict | None) -> tuple:
    """The overrides that change computation, in one hashable form."""
    out = {
        k: json.dumps(canonical_value(v), sort_keys=True)
        for k, v in (overrides or {}).items()
        if k not in SPEED_NEUTRAL and k != "width_mult" and v is not None
    }
    return tuple(sorted(out.items()))


def _model(variant: str, backbone: str | None, protocol: str, overrides: tuple, where: str) -> tuple:
    try:
        r = resolve_variant(variant, backbone=backbone)
    except ValueError as err:
        raise PlanError(f"{where}: {err}") from None
    return r.display_name, r.backbone, protocol, overrides


def _positive(value: Any, where: str) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise PlanError(f"{where} must be a positive number, got {value!r}")
    return float(value)


def _read(path: Path, option: str, parse, errors: tuple) -> Any:
    """``parse`` of the file's text; a missing or unreadable file is a PlanError naming ``option``."""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{option} {path}: file not found") from None
    except (OSError, UnicodeDecodeError, *errors) as err:
        raise PlanError(f"{option} {path}: not readable ({err})") from None


def read_bench_files(paths: list[str | Path]) -> list[Measurement]:
    """Measurements from bench.json files and folders of them."""
    out = []
    for f in bench_files(paths):
        try:
            b = read_bench(f)
        except ResultFileError as err:
            raise PlanError(f"--bench: {err}") from None
        overrides = dict(b.get("overrides") or {})
        settings = (b.get("run") or {}).get("settings") or {}
        protocol, speed_overrides = str(b.get("protocol") or "official"), _speed_overrides(overrides)
        model = _model(b["variant"], b["backbone"], protocol, speed_overrides, f"{f}: key 'variant'")
        width = float(overrides.get("width_mult", settings.get("width_mult") or 1.0))
        size, classes = tuple(int(v) for v in b["input_size"]), int(b.get("num_classes") or 1000)
        img_s = _positive(b["train_img_s"], f"{f}: key 'train_img_s'")
        name, gpu = str(b.get("device_name") or b["device"]), b["device"] == "cuda"
        out.append(Measurement(model, width, size, classes, int(b["batch_size"]), img_s, str(f), name, gpu))
    return out


def read_device_check(path: str | Path) -> list[Measurement]:
    """Measurements from the ``throughput`` part of a device_check.json (ResNet-18, official
    protocol, at the document's ``sizes``); a variant the check could not run is skipped."""
    path = Path(path)
    where = f"--device-check {path}"
    doc = _read(path, "--device-check", json.loads, (json.JSONDecodeError,))
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith("gmsop-device-check/"):
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise PlanError(
            f"{where}: key 'format' must be gmsop-device-check/<version> "
            f"(a device_check.json of gmsop check-device), got {got!r}"
        )
    try:
        i = next(i for i, p in enumerate(doc["parts"]) if p.get("name") == "throughput")
        variants = doc["parts"][i]["figures"]["variants"]
        sizes, env = doc["sizes"], doc["env"]
        side, width, batch = int(sizes["image_size"]), float(sizes["width_mult"]), int(sizes["batch_size"])
        classes = int(sizes.get("bench_classes") or 1000)
    except StopIteration:
        raise PlanError(f"{where}: no 'throughput' part in 'parts' (run check-device with it)") from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise PlanError(f"{where}: missing or bad key {err} (sizes, env, parts[].figures.variants)") from None
    name, gpu = str(env.get("device_name") or env.get("device")), env.get("device") == "cuda"
    if (doc.get("options") or {}).get("tiny"):
        name += " (check-device --tiny: sizes that prove code paths, not speeds)"
    out = []
    for j, rec in enumerate(variants):
        at = f"{where}: key 'parts[{i}].figures.variants[{j}]"
        if not isinstance(rec, dict):
            raise PlanError(f"{at}' must be a mapping, got {rec!r}")
        if rec.get("train_img_s") is None:  # the check could not run this variant ("error" says why)
            continue
        model = _model(str(rec.get("variant")), None, "official", (), f"{at}.variant'")
        img_s = _positive(rec["train_img_s"], f"{at}.train_img_s'")
        out.append(Measurement(model, width, (3, side, side), classes, batch, img_s, str(path), name, gpu))
    return out


def paper_measurements() -> list[Measurement]:
    """The paper's published training speeds (Sec. 3.2: GTX 1080, 64x64, batch 256, ResNet-18)."""
    out = []
    for (v, b), (fps, quote) in TRAIN_FPS.items():
        model, source = _model(v, b, "official", (), "TRAIN_FPS"), f"the paper, {quote}"
        out.append(Measurement(model, 1.0, (3, 64, 64), 1000, 256, fps, source, PAPER_DEVICE, True, True))
    return out


@dataclass(frozen=True)
class DataFacts:
    train_images: int | None  # stored training images (before flip doubling)
    input_size: tuple[int, int] | None  # (H, W) the model sees
    num_classes: int | None
    flip_double: bool
    note: str


def dataset_facts(entry: dict, row_augment: dict | None = None) -> DataFacts:
    """Training images, input size and classes of a config's dataset entry under a row's
    ``augment`` (it replaces the dataset's), known without building the dataset."""
    name, root = entry["name"], entry.get("root")
    options = dict(entry.get("options") or {})
    if row_augment:
        options["augment"] = dict(row_augment)
    opts = {**dataset_options(name), **{k: v for k, v in options.items() if v is not None}}
    spec = augment_spec(name, options)  # through the dataset's presets, as its builder resolves it
    if name not in ("synthetic", "imagenet64", "places365"):
        note = f"dataset {name!r}: input size not known without building it"
        return DataFacts(train_size(name, root, options), None, None, bool(spec and spec.flip_double), note)
    size = spec.output_size((int(opts["size"]),) * 2, train=True)
    full = "the full release's training split"
    if name == "synthetic":
        n, classes, note = train_size(name, root, options), int(opts["classes"]), "generated (option n_train)"
    elif name == "places365":
        n, classes, note = PLACES_TRAIN, 365, full
    elif (classes := int(opts["num_classes"])) == 1000:
        n, note = IMAGENET_TRAIN, full
    else:
        n, note = None, "a class subset: its size is known only from the files"
    return DataFacts(n, size, classes, spec.flip_double, note)


@functools.cache
def _flops(model: tuple, width: float, input_size: tuple[int, int, int], num_classes: int) -> float:
    """Forward FLOPs per image of one model (built on the CPU)."""
    variant, backbone, protocol, overrides = model
    kwargs = {k: json.loads(v) for k, v in overrides} | ({"width_mult": width} if width != 1.0 else {})
    with torch.no_grad():
        net = build_model(variant, backbone=backbone, num_classes=num_classes, protocol=protocol, **kwargs)
        return float(count_flops(net, input_size=input_size))


def _fmt_size(size) -> str:
    return "x".join(str(int(v)) for v in size)


def _speed_for(
    model: tuple, width: float, input_size: tuple, classes: int, measurements: list[Measurement]
) -> tuple[float | None, str, str, Measurement | None]:
    """(img/s, label, where from, reference) of one row (the rule is in the module docstring)."""
    at_width = [m for m in measurements if math.isclose(m.width_mult, width, rel_tol=1e-9)]
    refs = [m for m in at_width if not m.paper] or at_width
    if not refs:
        widths = ", ".join(sorted({f"{m.width_mult:g}" for m in measurements}))
        also = f" (measurements exist at width {widths})" if widths else ""
        return None, "no measurement", f"nothing measured at width {width:g}{also}", None
    for m in refs:
        if m.model == model and m.input_size == input_size:
            return m.train_img_s, "published" if m.paper else "measured", m.where(), m
    row = _flops(model, width, input_size, classes)
    m = min(refs, key=lambda x: (x.model != model, abs(math.log(x.flops() / row)), x.model))
    how = "the same model at another input size" if m.model == model else "the model nearest in FLOPs"
    text = (
        f"{m.model[0]} ({m.model[1]}) at {m.train_img_s:,.0f} img/s, {how}: {m.where()}; x FLOPs ratio "
        f"{m.flops() / 1e9:.3g}/{row / 1e9:.3g} GFLOPs (input {_fmt_size(m.input_size)} -> "
        f"{_fmt_size(input_size)})"
    )
    return m.train_img_s * m.flops() / row, "extrapolated", text, m


def load_config(path: str | Path) -> dict:
    """A workflow config file, checked against the workflow's schema where the checkout and
    jsonschema are there."""
    path = Path(path)
    config = _read(path, "--config", yaml.safe_load, (yaml.YAMLError,))
    if not isinstance(config, dict):
        raise PlanError(f"--config {path}: expected a mapping of config keys, got {type(config).__name__}")
    schema_file = _REPO / "workflow" / "schemas" / "config.schema.yaml"
    if not schema_file.exists() or importlib.util.find_spec("jsonschema") is None:
        return config
    import jsonschema

    schema = yaml.safe_load(schema_file.read_text())
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if err is not None:
        raise PlanError(f"--config {path}: config error at {describe_schema_error(err, schema)}")
    return config


def estimate(configs: list[tuple[str, dict]], measurements: list[Measurement]) -> list[RowEstimate]:
    """One :class:`RowEstimate` per planned row (a user's own rule excluded); training jobs are
    deduplicated over all ``configs`` in order (one results folder)."""
    seen: set[tuple[str, int]] = set()
    out: list[RowEstimate] = []
    for name, config in configs:
        try:
            load_plugins(config.get("plugins", []))
            plan = make_plan(config)
        except (ValueError, ImportError) as err:
            raise PlanError(f"--config {name}: {err}") from None
        for exp in plan.experiments.values():
            for row in exp.rows:
                if not row.rule:
                    new = [s for s in row.seeds if (row.run, int(s)) not in seen]
                    seen.update((row.run, int(s)) for s in row.seeds)
                    out.append(_estimate_row(name, plan, exp.name, row, len(new), measurements))
    return out


def _estimate_row(config: str, plan, experiment: str, row, new_jobs: int, measurements) -> RowEstimate:
    spec = plan.runs[row.run]
    facts = dataset_facts(plan.datasets[spec["dataset"]], spec.get("augment"))
    batch = int(spec["batch_size"])
    epochs = sum(int(ep) for _, ep in spec["schedule"])
    per_epoch = images = None
    if facts.train_images is not None:  # training drops the last incomplete batch
        per_epoch = facts.train_images * (2 if facts.flip_double else 1) // batch * batch
        images = new_jobs * epochs * per_epoch
    width = float(spec.get("width_mult") or 1.0)
    size = (3, *facts.input_size) if facts.input_size else None
    est = RowEstimate(
        config=config,
        experiment=experiment,
        row=row.label,
        model=f"{row.display} ({row.backbone})",
        width_mult=width,
        input=_fmt_size(size) if size else "?",
        batch_size=batch,
        jobs=len(row.seeds),
        new_jobs=new_jobs,
        epochs=epochs,
        images_per_epoch=per_epoch,
        images=images,
        speed_from=facts.note,
    )
    if size is None or per_epoch is None:
        return est
    overrides = _speed_overrides(plan.benches[row.bench]["overrides"])
    model = _model(spec["variant"], row.backbone, spec["protocol"], overrides, f"{config}: row {row.label!r}")
    img_s, est.speed, est.speed_from, ref = _speed_for(model, width, size, facts.num_classes, measurements)
    if img_s:
        est.train_img_s, est.device_name, est.gpu = img_s, ref.device_name, ref.gpu
        est.hours_per_job = epochs * per_epoch / img_s / 3600
        est.hours = new_jobs * est.hours_per_job
    return est


def summarize(rows: list[RowEstimate]) -> tuple[list[dict], dict]:
    """Per (config, experiment) and overall: jobs, new jobs, images, hours, jobs by speed label."""
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
            **{
                f"jobs_{s}": sum(r.new_jobs for r in counted if r.speed == s)
                for s in ("measured", "published", "extrapolated")
            },
            "jobs_without_speed": sum(r.new_jobs for r in missing),
            "rows_without_speed": len(missing),
            "gpu_only": all(r.gpu for r in counted) if counted else None,
            "devices": sorted({r.device_name for r in counted}),
        }

    return [{"config": c, "experiment": e, **agg(rs)} for (c, e), rs in groups.items()], agg(rows)


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


def total_line(total: dict) -> str:
    word = "GPU-hours" if total["gpu_only"] else "device-hours"
    n = total["jobs_published"]
    published = f"{n} at the paper's published speed, " if n else ""
    line = (
        f"Total: {total['new_jobs']} training jobs, {_count(total['images'])} images, "
        f"{_hours(total['hours'])} {word} on {'; '.join(total['devices']) or 'none'} "
        f"({total['jobs_measured']} jobs measured, {published}{total['jobs_extrapolated']} extrapolated)"
    )
    if total["jobs_without_speed"]:
        line += (
            f"; {total['jobs_without_speed']} jobs ({total['rows_without_speed']} rows) have no "
            f"measurement and are NOT in this total"
        )
    if len(total["devices"]) > 1:
        line += "; speeds from more than one device: the sum is not one machine's time"
    return line


def format_text(rows: list[RowEstimate], configs: list[str]) -> str:
    per_exp, total = summarize(rows)
    several = len(configs) > 1
    notes: dict[str, int] = {}  # "label: where from" -> its footnote number
    table = []
    for r in rows:
        note = notes.setdefault(f"{r.speed}: {r.speed_from}", len(notes) + 1)
        table.append(
            {
                **({"config": Path(r.config).name} if several else {}),
                "experiment": r.experiment,
                "row": r.row,
                "model": r.model,
                "width": f"{r.width_mult:g}",
                "input": r.input,
                "batch": r.batch_size,
                "jobs": f"{r.new_jobs}/{r.jobs}",
                "epochs": r.epochs,
                "img/epoch": _count(r.images_per_epoch),
                "images": _count(r.images),
                "img/s": f"{r.train_img_s:,.0f}" if r.train_img_s else "-",
                "speed": f"{r.speed} [{note}]",
                "hours": _hours(r.hours),
                "h/job": _hours(r.hours_per_job),
            }
        )
    exp_table = [
        {
            **({"config": Path(e["config"]).name} if several else {}),
            "experiment": e["experiment"],
            "rows": e["rows"],
            "jobs": e["jobs"],
            "new jobs": e["new_jobs"],
            "images": _count(e["images"]),
            "hours": _hours(e["hours"]),
            "jobs without speed": e["jobs_without_speed"],
        }
        for e in per_exp
    ]
    speeds = "\n".join(f"  [{i}] {n}" for n, i in notes.items())
    return (
        f"gmsop plan: {', '.join(configs)}\n\nPer row (jobs: new training jobs / seeds, a run shared with an "
        "earlier row trains once; hours: of the new jobs, h/job: one job; training steps only)\n"
        f"{pd.DataFrame(table).to_string(index=False)}\n\nSpeeds:\n{speeds}\n\nPer experiment\n"
        f"{pd.DataFrame(exp_table).to_string(index=False)}\n\n{total_line(total)}\n"
    )


def format_csv(rows: list[RowEstimate], configs: list[str]) -> str:
    per_exp, total = summarize(rows)
    recs = [{"level": "row", **asdict(r)} for r in rows]
    recs += [{"level": "experiment", **e, "devices": "; ".join(e["devices"])} for e in per_exp]
    recs.append(
        {"level": "total", **total, "devices": "; ".join(total["devices"]), "speed_from": total_line(total)}
    )
    return pd.DataFrame(recs).to_csv(index=False)


def format_json(rows: list[RowEstimate], configs: list[str]) -> str:
    per_exp, total = summarize(rows)
    total = {**total, "line": total_line(total)}
    return to_json(
        {"configs": configs, "rows": [asdict(r) for r in rows], "experiments": per_exp, "total": total}
    )


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gmsop plan",
        description="Plan a workflow config in training jobs, images and GPU-hours, before running it: "
        "per row new jobs x epochs x images per epoch / training img/s, each speed labelled measured, "
        "published (the paper's), extrapolated by the FLOPs ratio (from what is named) or 'no measurement' "
        "(left out of the total, which counts them). Hours count training steps only.",
        epilog="Examples:\n"
        "  gmsop plan                                   # the embedded default, speeds from results/bench\n"
        "  gmsop plan --config workflow/configs/paper-imagenet64.yaml --assume-from-paper\n"
        "  gmsop plan --config workflow/configs/paper-places365.yaml --device-check device_check.json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    many = {"action": "append", "default": [], "metavar": "FILE"}
    p.add_argument(
        "--config",
        **many,
        help="workflow config (YAML) as given to snakemake --configfile; repeatable (jobs shared between "
        "configs count once). Default: ./config.yaml, else the embedded default",
    )
    p.add_argument("--device-check", **many, help="device_check.json of 'gmsop check-device'; repeatable")
    p.add_argument(
        "--bench",
        action="append",
        metavar="DIR_OR_FILE",
        help="bench.json files or folders of them; repeatable. Default: results/bench if it exists",
    )
    p.add_argument(
        "--assume-from-paper",
        action="store_true",
        help="where nothing of yours is measured at a row's width, use the paper's Sec. 3.2 training "
        "speeds of four ResNet-18 variants (GTX 1080, 64x64, batch 256), labelled, extrapolated by FLOPs",
    )
    p.add_argument(
        "--format",
        choices=["text", "csv", "json"],
        default="text",
        help="text (default): tables and a total line; csv: one line per row, experiment and total; json",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        here = Path("config.yaml")
        paths = args.config or [str(here if here.exists() else _REPO / "config.yaml")]
        configs = [(p, load_config(p)) for p in paths]
        measurements = [m for f in args.device_check for m in read_device_check(f)]
        bench = args.bench if args.bench is not None else [p for p in ["results/bench"] if Path(p).is_dir()]
        measurements += read_bench_files(bench)
        if args.assume_from_paper:
            measurements += paper_measurements()
        rows = estimate(configs, measurements)
    except PlanError as err:
        print(f"gmsop plan: error: {err}", file=sys.stderr)
        return 2
    sys.stdout.write({"text": format_text, "csv": format_csv, "json": format_json}[args.format](rows, paths))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
