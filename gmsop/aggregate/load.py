"""Result files -> tidy DataFrames (layout and validation: :mod:`gmsop.formats`).

* runs: one row per ``metrics.json``: ``run_id`` (empty for a run trained by hand), identity,
  ``finished`` (a ``final`` block and every planned epoch), final errors, cost, environment and
  each hyper-parameter as ``hp.<name>`` (nested as ``hp.a.b``; lists and dicts as JSON text).
* epochs: per (run, epoch); routing: per (run, epoch, component); class_routing: per (run, class,
  component) of the last evaluation; bench: per benchmark file, ``input_size`` as "3x64x64".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gmsop.formats import EPOCH_NUMBERS, METRICS_NAME, bench_files, read_bench, read_metrics

PathLike = str | os.PathLike


def find_result_files(sources: PathLike | Iterable[PathLike], filename: str) -> list[Path]:
    """``sources`` (files and folders) as a list of files: a folder gives every ``filename`` below
    it, sorted; a file is taken as given; a source that does not exist raises ``FileNotFoundError``."""
    found: list[Path] = []
    for p in map(Path, [sources] if isinstance(sources, (str, os.PathLike)) else sources):
        if not p.exists():
            raise FileNotFoundError(f"result source does not exist: {p}")
        found += sorted(p.rglob(filename)) if p.is_dir() else [p]
    return found


#: Columns of the runs frame that come before the ``hp.*`` columns, in this order.
RUN_COLUMNS: tuple[str, ...] = tuple(
    "path run_id variant backbone protocol dataset seed tag finished top1_err top5_err epochs_done "
    "epochs_planned train_time_s train_img_s params rep_dim flops_per_image env.torch env.device "
    "env.device_name env.gmsop".split()
)
_ID_COLUMNS = RUN_COLUMNS[:8]

#: Columns of the bench frame, in this order.
BENCH_COLUMNS: tuple[str, ...] = tuple(
    "path bench_id variant backbone tag input_size num_classes batch_size device device_name "
    "train_img_s train_step_ms_median train_step_ms_iqr infer_img_s peak_mem_mb params "
    "flops_per_image achieved_tflops env.torch".split()
)
_FINAL_FLOATS = ("top1_err", "top5_err", "train_time_s", "train_img_s")
_EPOCH_FIELDS = ("epoch",) + EPOCH_NUMBERS
_ROUTING_FIELDS = ("epoch", "component", "count", "importance", "share")
_CLASS_ROUTING_FIELDS = ("class", "component", "count", "class_images")


def _flatten(obj: Mapping, prefix: str) -> dict[str, Any]:
    """{"a": {"b": 1}, "s": [[0.1, 40]]} -> {"hp.a.b": 1, "hp.s": "[[0.1, 40]]"}."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, (list, dict)):
            out[name] = json.dumps(value, sort_keys=True)
        else:
            out[name] = value
    return out


def _planned_epochs(hparams: Mapping) -> int | None:
    """Total epochs of a ``[[lr, epochs], ...]`` schedule, or None when there is no such schedule."""
    schedule = hparams.get("schedule")
    try:
        return int(sum(int(step[1]) for step in schedule)) if schedule else None
    except (TypeError, ValueError, IndexError):
        return None


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _run_row(path: Path, m: dict) -> dict[str, Any]:
    final = m["final"] or {}
    env = m.get("env") or {}
    planned = _planned_epochs(m["hparams"])
    done = final.get("epochs")
    row = {
        "path": str(path),
        "run_id": (m["run"] or {}).get("id", ""),
        "variant": m["variant"],
        "backbone": m.get("backbone"),
        "protocol": m.get("protocol"),
        "dataset": m["dataset"],
        "seed": int(m["seed"]),
        "tag": m.get("tag") or m["hparams"].get("tag") or "",
        "finished": bool(m["final"]) and (planned is None or (done is not None and done >= planned)),
        "epochs_done": done,
        "epochs_planned": planned,
        "params": _int(m.get("params")),
        "rep_dim": _int(m.get("rep_dim")),
        "flops_per_image": _num(m.get("flops_per_image")),
        **{k: _num(final.get(k)) for k in _FINAL_FLOATS},
        **{f"env.{k}": env.get(k) for k in ("torch", "device", "device_name", "gmsop")},
    }
    row.update(_flatten(m["hparams"], "hp."))
    return row


def _frame(rows: list[dict], leading: Iterable[str]) -> pd.DataFrame:
    """``leading`` columns first (present even with no rows), then the rest sorted."""
    leading = list(leading)
    extra = sorted({k for r in rows for k in r} - set(leading))
    return pd.DataFrame(rows, columns=leading + extra)


@dataclass(frozen=True)
class MetricsData:
    """The frames of one set of ``metrics.json`` files (each file parsed once)."""

    runs: pd.DataFrame
    epochs: pd.DataFrame
    routing: pd.DataFrame
    class_routing: pd.DataFrame


def load_metrics(sources: PathLike | Iterable[PathLike]) -> MetricsData:
    """Validate every ``metrics.json`` under ``sources`` and build its frames."""
    run_rows, epoch_rows, routing_rows, class_rows = [], [], [], []
    for path in find_result_files(sources, METRICS_NAME):
        m = read_metrics(path)
        run = _run_row(path, m)
        run_rows.append(run)
        ident = {k: v for k, v in run.items() if k in _ID_COLUMNS or k.startswith("hp.")}
        final = m["final"] or {}
        if final.get("val_routing") is not None and final.get("val_class_counts") is not None:
            for c, (row, images) in enumerate(zip(final["val_routing"], final["val_class_counts"])):
                class_rows += [
                    {**ident, "class": c, "component": i, "count": float(v), "class_images": float(images)}
                    for i, v in enumerate(row)
                ]
        for ep in m["epochs"]:
            epoch_rows.append({**ident, **{k: ep.get(k) for k in _EPOCH_FIELDS}})
            counts, imp = ep.get("routing_counts"), ep.get("importance")
            if counts is None:
                continue
            total = float(sum(counts))
            for i, c in enumerate(counts):
                importance = float(imp[i]) if imp is not None else float("nan")
                share = float(c) / total if total > 0 else float("nan")
                values = (ep["epoch"], i, float(c), importance, share)
                routing_rows.append({**ident, **dict(zip(_ROUTING_FIELDS, values))})
    runs = _frame(run_rows, RUN_COLUMNS)
    if runs.duplicated("path").any():
        dup = runs.loc[runs.duplicated("path"), "path"].iloc[0]
        raise ValueError(f"result file listed twice: {dup}")
    epochs = _frame(epoch_rows, _ID_COLUMNS + _EPOCH_FIELDS)
    routing = _frame(routing_rows, _ID_COLUMNS + _ROUTING_FIELDS)
    for frame, cols in ((runs, _FINAL_FLOATS), (epochs, _EPOCH_FIELDS[1:]), (routing, _ROUTING_FIELDS[2:])):
        for c in cols:  # null-able numeric fields: float with NaN, never object
            frame[c] = pd.to_numeric(frame[c], errors="raise").astype(float)
    runs["finished"] = runs["finished"].astype(bool)
    for c in ("epochs_done", "epochs_planned"):
        runs[c] = pd.array([None if pd.isna(v) else int(v) for v in runs[c]], dtype="Int64")
    class_routing = _frame(class_rows, _ID_COLUMNS + _CLASS_ROUTING_FIELDS)
    return MetricsData(runs=runs, epochs=epochs, routing=routing, class_routing=class_routing)


def select_epoch(routing: pd.DataFrame) -> pd.DataFrame:
    """A routing (or epochs) frame at each run's last epoch (with routing counts)."""
    if routing.empty:
        return routing
    last = routing.groupby("path")["epoch"].transform("max")
    return routing[routing["epoch"] == last].reset_index(drop=True)


def load_bench(sources: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """One row per benchmark file (``sources``: files and folders, :func:`gmsop.formats.bench_files`)."""
    rows = []
    for path in bench_files(sources):
        b = read_bench(path)
        row = {k: b.get(k) for k in BENCH_COLUMNS if k not in ("path", "bench_id", "input_size", "env.torch")}
        row.update(
            path=str(path),
            bench_id=(b["run"] or {}).get("id", ""),
            tag=b.get("tag") or "",
            input_size="x".join(str(int(x)) for x in b["input_size"]),
            **{"env.torch": (b.get("env") or {}).get("torch")},
        )
        rows.append(row)
    bench = _frame(rows, BENCH_COLUMNS)
    for c in BENCH_COLUMNS[10:15] + BENCH_COLUMNS[16:18]:  # the measured floats
        bench[c] = pd.to_numeric(bench[c], errors="raise").astype(float)
    return bench
