"""What each workflow job before the results does (data, training, benchmarks, identities), as
plain functions of the plan's resolved specs and file paths; the Snakemake scripts only call these.
The table, figure and scorecard jobs are in :mod:`gmsop.aggregate.jobs`, so a training job never
imports pandas or matplotlib (about 2 s of each job's start-up on a CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import torch

from gmsop.atomic import atomic_write, atomic_write_json
from gmsop.data import get_dataset
from gmsop.engine.config import TrainConfig
from gmsop.engine.throughput import BenchConfig, measure_throughput
from gmsop.engine.trainer import train
from gmsop.formats import IDENTITIES_PATH, check_bench, read_rule_metrics, run_block
from gmsop.gpu_slots import claim_gpus, job_device
from gmsop.plugins import load_plugins


def start_job(device: str, gpus: int, plugins: list[str]) -> str:
    """What a training or benchmark job does first: take a free GPU (Snakemake never says which)
    before CUDA starts and load the plugins; returns the device (``gmsop.gpu_slots.job_device``)."""
    claim_gpus(int(gpus))
    device, note = job_device(device, int(gpus))
    if note:
        print(note, flush=True)
    load_plugins(plugins)
    return device


def prepare_dataset(ds: dict, out: str | Path) -> dict:
    """Build the dataset's cache once and write its summary (shape, classes) to ``out``."""
    summary = get_dataset(ds["name"], ds.get("root"), **ds.get("options", {})).summary()
    summary["key_options"] = ds.get("options", {})
    atomic_write_json(out, summary)
    return summary


def _model_overrides(spec: dict) -> dict:
    width = float(spec.get("width_mult", 1.0))
    return {**spec.get("overrides", {}), **({"width_mult": width} if width != 1.0 else {})}


def train_config(spec: dict, ds: dict, seed: int, out: str, ckpt_dir: str, **fields) -> TrainConfig:
    """The TrainConfig of one planned run and seed; ``fields`` are further TrainConfig fields
    (``device``, ``run``: the identity block, ``eval_every``)."""
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
        out=str(out),
        ckpt_dir=str(ckpt_dir),
        progress="lines",
        **fields,
    )


def run_training(spec: dict, ds: dict, seed: int, out: str, ckpt_dir: str, threads=None, **fields) -> dict:
    """Train (or resume) one run (``fields`` as :func:`train_config`'s); returns its metrics."""
    if threads:
        torch.set_num_threads(int(threads))
    return train(train_config(spec, ds, seed, out, ckpt_dir, **fields))


def run_bench(spec: dict, bench: dict, dataset_info, out, device="auto", threads=None, run=None) -> dict:
    """Measure one variant's throughput at its dataset's input shape (``dataset_info``: the prepared
    dataset's JSON); writes ``out`` with the identity block ``run``."""
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
    result = check_bench(measure_throughput(cfg) | {"run": run}, out)
    atomic_write_json(out, result)
    return result


def _identities_path(config: dict) -> Path:
    """Where the plan of workflow ``config`` keeps its identity blocks (a hash of the config)."""
    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(IDENTITIES_PATH.format(config=key))


def write_identities(plan, config: dict) -> Path:
    """Write every job's identity block (see ``identity``) when the workflow plans, if changed."""
    blocks = {
        kind: {r: run_block(r, plan.planned_for(r, bench=kind == "bench"), s) for r, s in specs.items()}
        for kind, specs in (("train", plan.runs), ("bench", plan.benches))
    }
    blocks = json.loads(json.dumps(blocks, default=str))
    path = _identities_path(config)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")) == blocks:
            return path
    atomic_write_json(path, blocks)
    return path


def identity(config: dict, run: str, kind: str = "train") -> dict:
    """The identity block of training run (or ``kind="bench"`` benchmark) ``run``, from the file the
    workflow wrote when it planned (no rule parameter: a table reusing a run then retrains nothing)."""
    path = _identities_path(config)
    try:
        return json.loads(path.read_text(encoding="utf-8"))[kind][run]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(
            f"{path}: no {kind} identity for {run!r} ({type(err).__name__}: {err}); the workflow writes "
            "it when it plans, so run the job through snakemake"
        ) from None


def check_rule_result(path: str | Path, rule: str, seed: int, out: str | Path) -> dict:
    """Check the metrics.json a user's rule wrote and copy its bytes to ``out`` for the tables."""
    metrics = read_rule_metrics(path, rule, seed)
    atomic_write(out, Path(path).read_bytes())
    return metrics
