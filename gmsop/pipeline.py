"""What each workflow step does, as plain functions (the Snakemake scripts only call these).

A step receives the plan's resolved specs (see gmsop.experiments) and file paths; it never
imports Snakemake, so every step is testable and usable from another workflow manager.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "start_job",
    "write_identities",
    "identity",
    "prepare_dataset",
    "train_config",
    "run_training",
    "run_bench",
    "make_table",
    "make_figure",
    "make_scorecard",
    "load_results",
    "check_rule_result",
]


def start_job(device: str, gpus: int, plugins: list[str]) -> str:
    """What a training or benchmark job does before anything else; returns the device to use.

    Snakemake limits how many GPU jobs run at once but never says which GPU: take a free one
    (CUDA_VISIBLE_DEVICES) before CUDA starts (a no-op without GPUs or inside a SLURM job). A job
    that reserved no GPU (gpus_per_job 0) runs "auto" on the CPU (``gmsop.gpu_slots.job_device``).
    Then the config's plugins are loaded, so their variants and datasets resolve."""
    from gmsop.gpu_slots import claim_gpus, job_device
    from gmsop.plugins import load_plugins

    claim_gpus(int(gpus))
    device, note = job_device(device, int(gpus))
    if note:
        print(note, flush=True)
    load_plugins(plugins)
    return device


def _dataset(ds: dict, **extra):
    from gmsop.data import get_dataset

    return get_dataset(ds["name"], ds.get("root"), **{**ds.get("options", {}), **extra})


def prepare_dataset(ds: dict, out: str | Path) -> dict:
    """Build the dataset's cache once and write its summary (shape, classes) to ``out``."""
    from gmsop.atomic import atomic_write_json

    summary = _dataset(ds).summary()
    summary["key_options"] = ds.get("options", {})
    atomic_write_json(out, summary)
    return summary


def _model_overrides(spec: dict) -> dict:
    overrides = dict(spec.get("overrides", {}))
    if float(spec.get("width_mult", 1.0)) != 1.0:
        overrides["width_mult"] = float(spec["width_mult"])
    return overrides


def train_config(
    spec: dict,
    ds: dict,
    seed: int,
    out: str,
    ckpt_dir: str,
    device: str = "auto",
    run: dict | None = None,
    eval_every: int = 1,
):
    """The TrainConfig of one planned run (spec from gmsop.experiments.make_plan) and seed;
    ``run`` is its identity block (gmsop.formats.run_block), written into metrics.json;
    ``eval_every`` the workflow's (evaluation only: it does not change the training)."""
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
        lr_scaling=spec.get("lr_scaling") or "linear",
        seed=int(seed),
        deterministic=bool(spec.get("deterministic", False)),
        device=device,
        out=str(out),
        ckpt_dir=str(ckpt_dir),
        progress="lines",
        run=run,
        eval_every=int(eval_every),
    )


def run_training(
    spec: dict,
    ds: dict,
    seed: int,
    out: str,
    ckpt_dir: str,
    device: str = "auto",
    threads: int | None = None,
    run: dict | None = None,
    eval_every: int = 1,
) -> dict:
    """Train (or resume) one run; returns the metrics written to ``out``."""
    import torch

    from gmsop.engine.trainer import train

    if threads:
        torch.set_num_threads(int(threads))
    return train(train_config(spec, ds, seed, out, ckpt_dir, device, run=run, eval_every=eval_every))


def run_bench(
    spec: dict,
    bench: dict,
    dataset_info: str | Path,
    out: str | Path,
    device: str = "auto",
    threads: int | None = None,
    run: dict | None = None,
) -> dict:
    """Measure one variant's throughput at its dataset's input shape; writes ``out`` with the
    identity block ``run`` (gmsop.formats.run_block)."""
    import torch

    from gmsop.atomic import atomic_write_json
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
    from gmsop.formats import check_bench

    result = check_bench(measure_throughput(cfg) | {"run": run}, out)
    atomic_write_json(out, result)
    return result


def _identities_path(config: dict) -> Path:
    """Where the plan of workflow ``config`` keeps its identity blocks (a hash of the config)."""
    import hashlib

    from gmsop.formats import IDENTITIES_PATH

    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(IDENTITIES_PATH.format(config=key))


def _identities(plan) -> dict:
    from gmsop.formats import run_block

    return {
        "train": {r: run_block(r, plan.planned_for(r), s) for r, s in plan.runs.items()},
        "bench": {b: run_block(b, plan.bench_planned_for(b), s) for b, s in plan.benches.items()},
    }


def write_identities(plan, config: dict) -> Path:
    """Write every job's identity block (see ``identity``) once, when the workflow plans; the
    file is rewritten only when its content changes."""
    from gmsop.atomic import atomic_write_json

    path = _identities_path(config)
    blocks = json.loads(json.dumps(_identities(plan), default=str))
    try:
        if json.loads(path.read_text(encoding="utf-8")) == blocks:
            return path
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, blocks)
    return path


def identity(config: dict, run: str, kind: str = "train") -> dict:
    """The identity block of training run (or, ``kind="bench"``, benchmark) ``run`` under the
    workflow ``config``: its id, the rows it was planned for, its resolved settings.

    Read from the file the workflow wrote when it planned (``write_identities``, found by a hash
    of the config), not passed as a rule parameter: adding a table that reuses a run changes its
    rows, and a changed parameter makes Snakemake retrain. Without that file (a job run outside
    the workflow's planning), the plan is made here."""
    try:
        return json.loads(_identities_path(config).read_text(encoding="utf-8"))[kind][run]
    except (OSError, ValueError, KeyError):
        pass
    from gmsop.experiments import make_plan

    return _identities(make_plan(config))[kind][run]


def check_rule_result(path: str | Path, rule: str, seed: int, out: str | Path) -> dict:
    """Check the metrics.json a user's rule wrote (gmsop.formats.read_rule_metrics) and copy its
    bytes to ``out``, where the tables read it; a malformed file raises naming the file and key."""
    from gmsop.atomic import atomic_write
    from gmsop.formats import read_rule_metrics

    metrics = read_rule_metrics(path, rule, seed)
    atomic_write(out, Path(path).read_bytes())
    return metrics


def load_results(runs: list[str], benches: list[str] | None = None):
    """The frames of ``runs`` (metrics.json paths) and ``benches`` (bench.json files or folders
    of them, ``gmsop.formats.bench_files``)."""
    from gmsop.aggregate.load import load_bench, load_metrics
    from gmsop.formats import bench_files

    data = load_metrics([Path(p) for p in runs])
    files = bench_files(benches or [])
    bench = load_bench(files) if files else None
    return data, bench


def make_table(experiment, runs: list[str], benches: list[str], stem: str | Path):
    """Write ``stem``.{csv,md,html,tex} for one planned experiment (gmsop.experiments.Experiment)."""
    from gmsop.aggregate.tables import build_table
    from gmsop.aggregate.writers import write_table

    data, bench = load_results(runs, benches)
    table = build_table(experiment, data.runs, bench)
    write_table(table, str(stem))
    return table


def make_scorecard(experiments, runs: list[str], stem: str | Path, landing: str | Path | None = None):
    """Write ``stem``.{csv,md,html}, its forest plot ``stem``.{svg,png} (and the report's landing
    fragment): every claim of every experiment, Holm-adjusted over the claims tested."""
    from gmsop.aggregate.scorecard import build_scorecard, write_scorecard

    data, _ = load_results(runs)
    card = build_scorecard(experiments, data.runs)
    write_scorecard(card, stem, landing)
    return card


def make_figure(kind: str, experiment, runs: list[str], benches: list[str] | None, paths: list[str]) -> None:
    """One figure of a planned experiment: ``curves``, ``alpha_counts``, ``alpha_error``, ``grid`` or
    ``class_routing``; SVG + PNG."""
    from gmsop.aggregate import figures

    data, bench = load_results(runs, benches)
    if kind == "curves":
        fig = figures.plot_training_curves(
            experiment, data.epochs, title=f"Training curves: {experiment.title}"
        )
    elif kind == "alpha_counts":
        fig = figures.plot_routing(experiment, data.routing)
    elif kind == "alpha_error":
        fig = figures.plot_alpha_sweep(experiment, data.runs)
    elif kind == "grid":
        fig = figures.plot_nk_grid(experiment, data.runs, bench)
    elif kind == "class_routing":
        fig = figures.plot_class_routing(experiment, data.class_routing)
    else:
        raise ValueError(
            f"unknown figure kind {kind!r}; valid: curves, alpha_counts, alpha_error, grid, class_routing"
        )
    figures.save_figure(fig, [Path(p) for p in paths])
