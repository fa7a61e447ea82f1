"""Read the trainer's ``metrics.json`` and the benchmark's ``bench.json`` into tidy DataFrames.

The files are the only interface between training and reporting, so they are validated on the way
in: a missing key or a value of the wrong type raises :class:`ResultFileError` naming the file and
the dotted key (``final.top1_err``, ``epochs[3].val_top1_err``), instead of surfacing later as a
NaN in a table. Frames built here:

* runs (:func:`load_runs`): one row per training run. Identity columns, ``finished``, final
  errors, cost, environment, and every hyper-parameter flattened to an ``hp.<name>`` column
  (nested dicts as ``hp.a.b``; lists and dicts as canonical JSON strings, so they stay hashable).
* epochs (:func:`load_epochs`): one row per (run, epoch), for training curves.
* routing (:func:`load_routing`): one row per (run, epoch, mixture component) with the number of
  samples routed to it and its summed gate weight; empty for non-mixture variants.
* bench (:func:`load_bench`): one row per benchmark file; ``input_size`` becomes "3x64x64".

A run counts as ``finished`` when its ``final`` block is present and it trained at least as many
epochs as ``hparams.schedule`` (pairs of ``[lr, epochs]``) plans; a trainer that rewrites the file
every epoch therefore never has its half-trained runs averaged into a table.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "ResultFileError", "MetricsData", "find_result_files", "read_metrics", "read_bench",
    "load_metrics", "load_runs", "load_epochs", "load_routing", "load_bench", "select_epoch",
    "RUN_COLUMNS", "BENCH_COLUMNS",
]

PathLike = str | os.PathLike


class ResultFileError(ValueError):
    """A result file is unreadable, or lacks a key, or holds a value of the wrong type."""

    def __init__(self, path: PathLike, message: str):
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


# ---------------------------------------------------------------------------------------------
# Validation: a tiny type vocabulary, enough to say precisely what is wrong.

_KIND_TEXT = {
    "str": "a string", "int": "an integer", "num": "a number", "dict": "an object",
    "list": "a list", "int_list": "a list of integers", "num_list": "a list of numbers",
}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    # Counts written by a float-happy writer (10350000.0) are fine; 0.5 seeds are not.
    return _is_num(v) and (isinstance(v, int) or (math.isfinite(v) and float(v).is_integer()))


_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": _is_int,
    "num": _is_num,
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "int_list": lambda v: isinstance(v, list) and all(_is_int(x) for x in v),
    "num_list": lambda v: isinstance(v, list) and all(_is_num(x) for x in v),
}

# (key, kind, nullable). Required keys must be present; nullable ones may hold null.
_METRICS_REQUIRED = [
    ("variant", "str", False), ("backbone", "str", False), ("protocol", "str", False),
    ("dataset", "str", False), ("seed", "int", False), ("params", "int", False),
    ("rep_dim", "int", False), ("hparams", "dict", False), ("final", "dict", True),
    ("epochs", "list", False),
]
_METRICS_OPTIONAL = [("flops_per_image", "num", True), ("env", "dict", True), ("tag", "str", True)]
_FINAL_REQUIRED = [("top1_err", "num", False), ("top5_err", "num", False), ("epochs", "int", False)]
_FINAL_OPTIONAL = [("train_time_s", "num", True), ("train_img_s", "num", True)]
_EPOCH_REQUIRED = [("epoch", "int", False), ("train_loss", "num", True), ("val_top1_err", "num", True)]
_EPOCH_OPTIONAL = [
    ("lr", "num", True), ("train_ce", "num", True), ("train_balance", "num", True),
    ("train_top1_err", "num", True), ("val_top5_err", "num", True), ("epoch_time_s", "num", True),
    ("train_img_s", "num", True), ("routing_counts", "num_list", True), ("importance", "num_list", True),
    ("gate_logit_spread", "num", True), ("gate_noise_spread", "num", True),
]
_BENCH_REQUIRED = [
    ("variant", "str", False), ("backbone", "str", False), ("input_size", "int_list", False),
    ("batch_size", "int", False), ("device", "str", False), ("train_img_s", "num", False),
    ("params", "int", False),
]
_BENCH_OPTIONAL = [
    ("num_classes", "int", True), ("device_name", "str", True), ("train_step_ms_median", "num", True),
    ("train_step_ms_iqr", "num", True), ("infer_img_s", "num", True), ("peak_mem_mb", "num", True),
    ("flops_per_image", "num", True), ("achieved_tflops", "num", True), ("env", "dict", True),
    ("tag", "str", True),
]


def _check(path: PathLike, obj: Mapping, prefix: str, required, optional) -> None:
    for key, kind, nullable in required + optional:
        name = f"{prefix}{key}"
        if key not in obj:
            if (key, kind, nullable) in required:
                raise ResultFileError(path, f"missing required key {name!r}")
            continue
        value = obj[key]
        if value is None:
            if not nullable:
                raise ResultFileError(path, f"key {name!r} must be {_KIND_TEXT[kind]}, got null")
            continue
        if not _CHECKS[kind](value):
            raise ResultFileError(
                path, f"key {name!r} must be {_KIND_TEXT[kind]}, got {value!r} ({type(value).__name__})")


def _read_json(path: PathLike) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except FileNotFoundError:
        raise ResultFileError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultFileError(path, f"not valid JSON ({err})") from None
    if not isinstance(obj, dict):
        raise ResultFileError(path, f"expected a JSON object at the top level, got {type(obj).__name__}")
    return obj


def read_metrics(path: PathLike) -> dict:
    """Read and validate one ``metrics.json``; returns the parsed object unchanged."""
    obj = _read_json(path)
    _check(path, obj, "", _METRICS_REQUIRED, _METRICS_OPTIONAL)
    if obj["final"] is not None:
        _check(path, obj["final"], "final.", _FINAL_REQUIRED, _FINAL_OPTIONAL)
    n_components = None
    for i, ep in enumerate(obj["epochs"]):
        where = f"epochs[{i}]."
        if not isinstance(ep, dict):
            raise ResultFileError(path, f"{where[:-1]} must be an object, got {type(ep).__name__}")
        _check(path, ep, where, _EPOCH_REQUIRED, _EPOCH_OPTIONAL)
        counts, imp = ep.get("routing_counts"), ep.get("importance")
        if counts is not None and imp is not None and len(counts) != len(imp):
            raise ResultFileError(path, f"{where}routing_counts has {len(counts)} entries but "
                                        f"{where}importance has {len(imp)}")
        if counts is not None:
            if n_components is not None and len(counts) != n_components:
                raise ResultFileError(path, f"{where}routing_counts has {len(counts)} components, "
                                            f"earlier epochs have {n_components}")
            n_components = len(counts)
    return obj


def read_bench(path: PathLike) -> dict:
    """Read and validate one ``bench.json``; returns the parsed object unchanged."""
    obj = _read_json(path)
    _check(path, obj, "", _BENCH_REQUIRED, _BENCH_OPTIONAL)
    if len(obj["input_size"]) != 3:
        raise ResultFileError(path, f"key 'input_size' must be [C, H, W], got {obj['input_size']!r}")
    return obj


# ---------------------------------------------------------------------------------------------
# Finding files.

def find_result_files(sources: PathLike | Iterable[PathLike], filename: str) -> list[Path]:
    """Expand ``sources`` (files and/or folders) into a sorted list of result files.

    A folder contributes every ``filename`` below it (recursively); a file is taken as given, so
    Snakemake can pass its exact inputs. A source that does not exist raises ``FileNotFoundError``.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found.extend(sorted(p.rglob(filename)))
        elif p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"result source does not exist: {p}")
    return found


# ---------------------------------------------------------------------------------------------
# Frames.

#: Columns of the runs frame that come before the ``hp.*`` columns, in this order.
RUN_COLUMNS: tuple[str, ...] = (
    "path", "variant", "backbone", "protocol", "dataset", "seed", "tag", "finished",
    "top1_err", "top5_err", "epochs_done", "epochs_planned", "train_time_s", "train_img_s",
    "params", "rep_dim", "flops_per_image", "env.torch", "env.device", "env.device_name", "env.gmsop",
)
_ID_COLUMNS = ("path", "variant", "backbone", "protocol", "dataset", "seed", "tag")

#: Columns of the bench frame, in this order.
BENCH_COLUMNS: tuple[str, ...] = (
    "path", "variant", "backbone", "tag", "input_size", "num_classes", "batch_size", "device",
    "device_name", "train_img_s", "train_step_ms_median", "train_step_ms_iqr", "infer_img_s",
    "peak_mem_mb", "params", "flops_per_image", "achieved_tflops", "env.torch",
)
_EPOCH_FIELDS = ("epoch",) + tuple(k for k, kind, _ in _EPOCH_REQUIRED[1:] + _EPOCH_OPTIONAL if kind != "num_list")
_ROUTING_FIELDS = ("epoch", "component", "count", "importance", "share")


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


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _run_row(path: Path, m: dict) -> dict[str, Any]:
    final = m["final"] or {}
    env = m.get("env") or {}
    planned = _planned_epochs(m["hparams"])
    done = final.get("epochs")
    row = {
        "path": str(path), "variant": m["variant"], "backbone": m["backbone"],
        "protocol": m["protocol"], "dataset": m["dataset"], "seed": int(m["seed"]),
        "tag": m.get("tag") or m["hparams"].get("tag") or "",
        "finished": bool(m["final"]) and (planned is None or (done is not None and done >= planned)),
        "top1_err": _num(final.get("top1_err")), "top5_err": _num(final.get("top5_err")),
        "epochs_done": done, "epochs_planned": planned,
        "train_time_s": _num(final.get("train_time_s")), "train_img_s": _num(final.get("train_img_s")),
        "params": int(m["params"]), "rep_dim": int(m["rep_dim"]),
        "flops_per_image": _num(m.get("flops_per_image")),
        "env.torch": env.get("torch"), "env.device": env.get("device"),
        "env.device_name": env.get("device_name"), "env.gmsop": env.get("gmsop"),
    }
    row.update(_flatten(m["hparams"], "hp."))
    return row


def _frame(rows: list[dict], leading: Iterable[str]) -> pd.DataFrame:
    """DataFrame with ``leading`` columns first (present even when there are no rows), then the rest sorted."""
    leading = list(leading)
    extra = sorted({k for r in rows for k in r} - set(leading))
    return pd.DataFrame(rows, columns=leading + extra)


@dataclass(frozen=True)
class MetricsData:
    """The three frames built from one set of ``metrics.json`` files (each file parsed once)."""

    runs: pd.DataFrame
    epochs: pd.DataFrame
    routing: pd.DataFrame


def load_metrics(sources: PathLike | Iterable[PathLike]) -> MetricsData:
    """Validate every ``metrics.json`` under ``sources`` and build the runs, epochs and routing frames."""
    run_rows, epoch_rows, routing_rows = [], [], []
    for path in find_result_files(sources, "metrics.json"):
        m = read_metrics(path)
        run = _run_row(path, m)
        run_rows.append(run)
        ident = {k: v for k, v in run.items() if k in _ID_COLUMNS or k.startswith("hp.")}
        for ep in m["epochs"]:
            epoch_rows.append({**ident, **{k: ep.get(k) for k in _EPOCH_FIELDS}})
            counts, imp = ep.get("routing_counts"), ep.get("importance")
            if counts is None:
                continue
            total = float(sum(counts))
            for i, c in enumerate(counts):
                routing_rows.append({
                    **ident, "epoch": ep["epoch"], "component": i, "count": float(c),
                    "importance": float(imp[i]) if imp is not None else float("nan"),
                    "share": float(c) / total if total > 0 else float("nan"),
                })
    runs = _frame(run_rows, RUN_COLUMNS)
    if runs.duplicated("path").any():
        dup = runs.loc[runs.duplicated("path"), "path"].iloc[0]
        raise ValueError(f"result file listed twice: {dup}")
    epochs = _frame(epoch_rows, _ID_COLUMNS + _EPOCH_FIELDS)
    routing = _frame(routing_rows, _ID_COLUMNS + _ROUTING_FIELDS)
    for frame, cols in ((runs, ("top1_err", "top5_err", "train_time_s", "train_img_s")),
                        (epochs, _EPOCH_FIELDS[1:]), (routing, _ROUTING_FIELDS[2:])):
        for c in cols:  # null-able numeric fields: float with NaN, never object
            frame[c] = pd.to_numeric(frame[c], errors="raise").astype(float)
    runs["finished"] = runs["finished"].astype(bool)
    for c in ("epochs_done", "epochs_planned"):
        runs[c] = pd.array([None if pd.isna(v) else int(v) for v in runs[c]], dtype="Int64")
    return MetricsData(runs=runs, epochs=epochs, routing=routing)


def load_runs(sources: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """One row per training run (see the module docstring for the columns)."""
    return load_metrics(sources).runs


def load_epochs(sources: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """One row per (run, epoch): the per-epoch training and validation metrics."""
    return load_metrics(sources).epochs


def load_routing(sources: PathLike | Iterable[PathLike], epoch: int | str = "last") -> pd.DataFrame:
    """One row per (run, epoch, component) of gated mixtures; ``epoch="last"`` keeps each run's
    last epoch that carries routing counts, ``"all"`` keeps every epoch, an int keeps that epoch."""
    routing = load_metrics(sources).routing
    return select_epoch(routing, epoch)


def select_epoch(routing: pd.DataFrame, epoch: int | str = "last") -> pd.DataFrame:
    """Restrict a routing (or epochs) frame to one epoch per run: "last", "all" or a number."""
    if epoch == "all" or routing.empty:
        return routing
    if epoch == "last":
        last = routing.groupby("path")["epoch"].transform("max")
        return routing[routing["epoch"] == last].reset_index(drop=True)
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        return routing[routing["epoch"] == epoch].reset_index(drop=True)
    raise ValueError(f"epoch must be 'last', 'all' or an integer, got {epoch!r}")


def load_bench(sources: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """One row per ``bench.json`` (see the module docstring)."""
    rows = []
    for path in find_result_files(sources, "bench.json"):
        b = read_bench(path)
        row = {k: b.get(k) for k in BENCH_COLUMNS if k not in ("path", "input_size", "env.torch")}
        row.update(path=str(path), tag=b.get("tag") or "",
                   input_size="x".join(str(int(x)) for x in b["input_size"]),
                   **{"env.torch": (b.get("env") or {}).get("torch")})
        rows.append(row)
    bench = _frame(rows, BENCH_COLUMNS)
    for c in ("train_img_s", "train_step_ms_median", "train_step_ms_iqr", "infer_img_s",
              "peak_mem_mb", "flops_per_image", "achieved_tflops"):
        bench[c] = pd.to_numeric(bench[c], errors="raise").astype(float)
    return bench
