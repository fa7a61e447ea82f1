"""Test inputs: valid ``metrics.json`` / ``bench.json`` records with caller-chosen numbers.

The executable form of the result-file contract that gmsop.aggregate.load validates, kept with
the tests (not in the package) so no code path can mistake these for results; every record says
``"device_name": "synthetic"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gmsop.atomic import atomic_write
from gmsop.formats import BENCH_FORMAT, METRICS_FORMAT, run_block

__all__ = ["make_metrics", "make_bench", "write_json"]

_ENV = {"torch": "synthetic", "cuda": None, "device": "cpu", "device_name": "synthetic", "gmsop": "0.1.0"}


def make_metrics(
    variant: str = "GM-SOP-16-8",
    backbone: str = "resnet18",
    *,
    seed: int = 0,
    top1: float = 38.2,
    top5: float = 17.0,
    protocol: str = "official",
    dataset: str = "synthetic",
    params: int = 10_350_000,
    rep_dim: int = 8256,
    epochs: int = 3,
    finished: bool = True,
    train_img_s: float = 800.0,
    alpha: float = 100.0,
    routing: Sequence[float] | None = None,
    hparams: dict[str, Any] | None = None,
    tag: str | None = None,
    run_id: str | None = "run",
    classes: int = 1000,
) -> dict[str, Any]:
    """A metrics record whose last epoch ends at ``top1``/``top5``, planned as run ``run_id``
    (None: a run trained by hand, no identity block) on a dataset of ``classes`` classes.

    ``routing`` (per-component sample counts) makes it a gated-mixture record: every epoch gets
    those counts and an importance proportional to them. ``finished=False`` leaves ``final`` null
    and writes only the first epoch, as a trainer does while a run is in progress.
    """
    hp = {
        "batch_size": 256,
        "schedule": [[0.1, epochs]],
        "epochs": epochs,
        "weight_decay": 1e-4,
        "num_classes": classes,
        "train_size": 1000 * classes,
        "width_mult": 1.0,
        "protocol_switches": {"alpha": alpha},
    }
    hp.update(hparams or {})
    done = epochs if finished else 1
    rows = []
    for e in range(1, done + 1):
        frac = e / epochs  # errors fall linearly from 90% to the final value
        rows.append(
            {
                "epoch": e,
                "lr": 0.1,
                "train_ce": 6.0 - 3.0 * frac,
                "train_balance": 0.01,
                "train_loss": 6.01 - 3.0 * frac,
                "train_top1_err": 90.0 - (90.0 - top1 + 5.0) * frac,
                "val_top1_err": 90.0 - (90.0 - top1) * frac,
                "val_top5_err": 70.0 - (70.0 - top5) * frac,
                "epoch_time_s": 10.0,
                "train_img_s": train_img_s,
                "routing_counts": list(routing) if routing is not None else None,
                "importance": [c / 2.0 for c in routing] if routing is not None else None,
            }
        )
    record: dict[str, Any] = {
        "format_version": METRICS_FORMAT,
        "run": run_block(run_id, [{"experiment": "test", "row": variant}], {"variant": variant})
        if run_id
        else None,
        "variant": variant,
        "backbone": backbone,
        "protocol": protocol,
        "dataset": dataset,
        "seed": seed,
        "params": params,
        "rep_dim": rep_dim,
        "flops_per_image": 1.0e9,
        "hparams": hp,
        "env": dict(_ENV),
        "final": {
            "top1_err": top1,
            "top5_err": top5,
            "epochs": epochs,
            "train_time_s": 10.0 * epochs,
            "train_img_s": train_img_s,
        }
        if finished
        else None,
        "epochs": rows,
    }
    if tag is not None:
        record["tag"] = tag
    return record


def make_bench(
    variant: str = "GM-SOP-16-8",
    backbone: str = "resnet18",
    *,
    train_img_s: float = 120.0,
    params: int = 10_350_000,
    device: str = "cpu",
    device_name: str = "synthetic",
    input_size: Sequence[int] = (3, 64, 64),
    batch_size: int = 64,
    bench_id: str | None = "bench",
) -> dict[str, Any]:
    """A bench record with the given throughput, planned as benchmark ``bench_id``; the derived
    timings are consistent with the throughput."""
    step_ms = 1000.0 * batch_size / train_img_s
    return {
        "format_version": BENCH_FORMAT,
        "run": run_block(bench_id, [{"experiment": "test", "row": variant}], {"variant": variant})
        if bench_id
        else None,
        "variant": variant,
        "backbone": backbone,
        "input_size": list(input_size),
        "num_classes": 1000,
        "batch_size": batch_size,
        "device": device,
        "device_name": device_name,
        "train_img_s": train_img_s,
        "train_step_ms_median": step_ms,
        "train_step_ms_iqr": 0.02 * step_ms,
        "infer_img_s": 3.0 * train_img_s,
        "peak_mem_mb": None,
        "params": params,
        "flops_per_image": 1.0e9,
        "achieved_tflops": 3.0e9 * train_img_s / 1e12,
        "env": dict(_ENV),
    }


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write(path, json.dumps(obj, indent=1) + "\n")


def make_run_metrics(
    run_id: str | None,
    variant: str = "GM-SOP-16-8",
    backbone: str = "resnet18",
    *,
    planned_for: Sequence[dict[str, str]] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`make_metrics` written for planned run ``run_id`` (None: trained by hand): the record
    carries ``format_version`` 2, the ``run`` identity block and every required hyper-parameter,
    whichever version of :func:`make_metrics` is in use (``kwargs`` go to it)."""
    from gmsop.formats import METRICS_FORMAT as _FORMAT
    from gmsop.formats import run_block as _run_block

    record = make_metrics(variant, backbone, **kwargs)
    record["format_version"] = _FORMAT
    planned = list(planned_for) if planned_for is not None else [{"experiment": "test", "row": variant}]
    record["run"] = _run_block(run_id, planned, {"variant": variant}) if run_id else None
    hp = record["hparams"]
    epochs = int(sum(int(step[1]) for step in hp.get("schedule") or [[0.1, kwargs.get("epochs", 3)]]))
    for key, value in (
        ("epochs", epochs),
        ("num_classes", 1000),
        ("train_size", 1_000_000),
        ("width_mult", 1.0),
        ("protocol_switches", {"alpha": kwargs.get("alpha", 100.0)}),
    ):
        hp.setdefault(key, value)
    return record


def make_run_bench(
    bench_id: str | None,
    variant: str = "GM-SOP-16-8",
    backbone: str = "resnet18",
    *,
    planned_for: Sequence[dict[str, str]] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`make_bench` written for planned benchmark ``bench_id`` (format 2, ``run`` block)."""
    from gmsop.formats import BENCH_FORMAT as _FORMAT
    from gmsop.formats import run_block as _run_block

    record = make_bench(variant, backbone, **kwargs)
    record["format_version"] = _FORMAT
    planned = list(planned_for) if planned_for is not None else [{"experiment": "test", "row": variant}]
    record["run"] = _run_block(bench_id, planned, {"variant": variant}) if bench_id else None
    return record
