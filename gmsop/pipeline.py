"""What each workflow step does, as plain functions (the Snakemake scripts only call these).

A step receives the plan's resolved specs (see gmsop.experiments) and file paths; it never
imports Snakemake, so every step is testable and usable from another workflow manager.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["prepare_dataset", "train_config", "run_training", "run_bench", "table_spec", "make_table", "make_figure"]


def _dataset(ds: dict, **extra):
    from gmsop.data import get_dataset

    return get_dataset(ds["name"], ds.get("root"), **{**ds.get("options", {}), **extra})


def prepare_dataset(ds: dict, out: str | Path) -> dict:
    """Build the dataset's cache once and write its summary (shape, classes) to ``out``."""
    from gmsop.engine.atomic import atomic_write_json

    summary = _dataset(ds).summary()
    summary["key_options"] = ds.get("options", {})
    atomic_write_json(out, summary)
    return summary


def _model_overrides(spec: dict) -> dict:
    overrides = dict(spec.get("overrides", {}))
    if float(spec.get("width_mult", 1.0)) != 1.0:
        overrides["width_mult"] = float(spec["width_mult"])
    return overrides


def train_config(spec: dict, ds: dict, seed: int, out: str, ckpt_dir: str, device: str = "auto"):
    """The TrainConfig of one planned run (spec from gmsop.experiments.make_plan) and seed."""
    from gmsop.engine.config import TrainConfig

    options = dict(ds.get("options", {}))
    if spec.get("augment"):
        options["augment"] = dict(spec["augment"])
    return TrainConfig(
        variant=spec["variant"],
        backbone=spec["backbone"],
        dataset=ds["name"],
        data_root=ds.get("root"),
        dataset_options=options,
        protocol=spec["protocol"],
        overrides=_model_overrides(spec),
        batch_size=int(spec["batch_size"]),
        schedule=[(float(lr), int(ep)) for lr, ep in spec["schedule"]],
        seed=int(seed),
        deterministic=bool(spec.get("deterministic", False)),
        device=device,
        out=str(out),
        ckpt_dir=str(ckpt_dir),
        progress="lines",
    )


def run_training(spec: dict, ds: dict, seed: int, out: str, ckpt_dir: str, device: str = "auto", threads: int | None = None) -> dict:
    """Train (or resume) one run; returns the metrics written to ``out``."""
    import torch

    from gmsop.engine.trainer import train

    if threads:
        torch.set_num_threads(int(threads))
    return train(train_config(spec, ds, seed, out, ckpt_dir, device))


def run_bench(spec: dict, bench: dict, dataset_info: str | Path, out: str | Path, device: str = "auto", threads: int | None = None) -> dict:
    """Measure one variant's throughput at its dataset's input shape; writes ``out``."""
    import torch

    from gmsop.engine.atomic import atomic_write_json
    from gmsop.engine.throughput import BenchConfig, measure_throughput

    if threads:
        torch.set_num_threads(int(threads))
    info = json.loads(Path(dataset_info).read_text())
    cfg = BenchConfig(
        variant=spec["variant"],
        backbone=spec["backbone"],
        input_size=(3, *[int(v) for v in info["input_size"]]),
        num_classes=int(info["num_classes"]),
        batch_size=int(spec["batch_size"]),
        warmup=int(bench.get("warmup", 10)),
        steps=int(bench.get("steps", 40)),
        device=device,
        protocol=spec["protocol"],
        overrides=_model_overrides(spec),
    )
    result = measure_throughput(cfg)
    atomic_write_json(out, result)
    return result


def _paper_ref(row: dict) -> tuple[str | None, str]:
    """Row ``paper`` value -> (paper variant, tag): "GM-GAP-16-8*" is the starred row."""
    paper = row.get("paper")
    if not paper:
        return None, ""
    return (paper[:-1], "star") if paper.endswith("*") else (paper, "")


def table_spec(experiment: dict) -> dict:
    """A gmsop.aggregate table spec selecting each row's runs by run id (no guessing by name)."""
    rows = []
    for r in experiment["rows"]:
        paper_variant, paper_tag = _paper_ref(r)
        rows.append(
            {
                "variant": r["variant"],
                "backbone": r["backbone"],
                "label": r["label"],
                "paper_variant": paper_variant or f"(none: {r['label']})",
                "paper_tag": paper_tag,
                "where": {"variant": None, "backbone": None, "tag": None, "run_id": r["run"]},
                "bench_where": {"variant": None, "backbone": None, "bench_id": r["bench"]},
            }
        )
    baseline = experiment.get("baseline")
    return {
        "title": experiment.get("title", ""),
        "paper_table": experiment.get("paper") if experiment.get("paper") in ("table2", "table3", "table4") else None,
        "baseline": baseline,
        "rows": rows,
        "orderings": list(experiment.get("orderings") or []),
    }


def _frames(runs: list[str], benches: list[str] | None = None):
    from gmsop.aggregate import load_bench, load_metrics

    data = load_metrics([Path(p) for p in runs])
    for df in (data.runs, data.epochs, data.routing):
        if "path" in df.columns:
            df["run_id"] = [Path(p).parent.parent.name for p in df["path"]]
    bench = load_bench([Path(p) for p in benches]) if benches else None
    if bench is not None and "path" in bench.columns:
        bench["bench_id"] = [Path(p).stem for p in bench["path"]]
    return data, bench


def make_table(experiment: dict, runs: list[str], benches: list[str], stem: str | Path):
    """Write ``stem``.{csv,md,html,tex} for one experiment."""
    from gmsop.aggregate import TableSpec, build_table_from_spec, write_table

    data, bench = _frames(runs, benches)
    spec = TableSpec.from_config(experiment.get("name", Path(stem).name), table_spec(experiment))
    table = build_table_from_spec(data.runs, bench, spec)
    write_table(table, str(stem))
    return table


def make_figure(kind: str, experiment: dict, runs: list[str], benches: list[str] | None, paths: list[str]) -> None:
    """One figure: ``curves``, ``alpha_counts``, ``alpha_error`` or ``grid``; SVG + PNG."""
    from gmsop.aggregate import figures

    data, bench = _frames(runs, benches)
    rows = experiment["rows"]
    title = experiment.get("title", "")
    backbone = rows[0]["backbone"]
    run_ids = [r["run"] for r in rows]
    alpha_col = "hp.protocol_switches.alpha"  # the resolved alpha of each run
    if kind == "curves":
        fig = figures.plot_training_curves(data.epochs, _curve_rows(rows), title=f"Training curves: {title}")
    elif kind == "alpha_counts":
        alphas = tuple(float(a) for a in (experiment.get("counts_alphas") or (0.0, 100.0)))
        fig = figures.plot_routing(data.routing, rows[0]["variant"], alphas, backbone=backbone, alpha_col=alpha_col, where={"run_id": run_ids})
    elif kind == "alpha_error":
        fig = figures.plot_alpha_sweep(data.runs, rows[0]["variant"], backbone=backbone, alpha_col=alpha_col, where={"run_id": run_ids})
    elif kind == "grid":
        fig = figures.plot_nk_grid(
            data.runs,
            bench,
            family=experiment.get("family", "GM-GAP"),
            backbone=backbone,
            baseline=experiment.get("baseline"),
            where={"run_id": run_ids},
            bench_where={"bench_id": [r["bench"] for r in rows]} if bench is not None else None,
        )
    else:
        raise ValueError(f"unknown figure kind {kind!r}; valid: curves, alpha_counts, alpha_error, grid")
    figures.save_figure(fig, [Path(p) for p in paths])


def _curve_rows(rows: list[dict]) -> list[Any]:
    return [
        {"variant": r["variant"], "backbone": r["backbone"], "label": r["label"], "where": {"variant": None, "backbone": None, "tag": None, "run_id": r["run"]}}
        for r in rows
    ]
