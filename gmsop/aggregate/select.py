"""Which result files belong to a planned row: the one rule every table, figure and claim uses.

A row's runs are the metrics.json files whose ``run.id`` is the row's run id and whose seed is one
of its seeds; its benchmarks are the bench.json files whose ``run.id`` is its bench id. Ids are
read from the files, never from paths, so moving a results folder cannot change a table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from gmsop.experiments import Row


def row_runs(frame: pd.DataFrame, row: Row, finished: bool = True) -> pd.DataFrame:
    """The lines of ``frame`` (runs, epochs or routing) of ``row``'s runs; with ``finished`` (runs
    frame only) unfinished runs are dropped. Two files of one seed raise ``ValueError``."""
    if frame.empty:
        return frame
    sel = frame[(frame["run_id"] == row.run) & frame["seed"].isin(list(row.seeds))]
    if finished and "finished" in sel.columns:
        sel = sel[sel["finished"]]
    files = sel.groupby("seed")["path"].unique() if not sel.empty else pd.Series(dtype=object)
    dup = files[files.map(len) > 1]
    if not dup.empty:
        raise ValueError(
            f"row {row.label!r} (run {row.run}): seed {int(dup.index[0])} appears in "
            f"{len(dup.iloc[0])} files {sorted(dup.iloc[0])}; remove the stray copies"
        )
    return sel


def row_bench(bench: pd.DataFrame | None, row: Row) -> pd.DataFrame:
    """The benchmark files of ``row`` (possibly none)."""
    if bench is None or bench.empty:
        return pd.DataFrame(columns=["bench_id", "train_img_s", "device", "device_name", "params"])
    return bench[bench["bench_id"] == row.bench]


def one_value(values: pd.Series, what: str, row: Row) -> Any:
    """The one distinct non-null value of ``values`` (None if none); several raise ``ValueError``:
    averaging runs that differ in dataset size, classes or architecture describes nothing."""
    distinct = sorted(set(values.dropna().tolist()), key=str)
    if len(distinct) > 1:
        raise ValueError(f"row {row.label!r} (run {row.run}): its runs mix {what} {distinct}")
    return distinct[0] if distinct else None


def step_size(fin: pd.DataFrame, row: Row) -> str | None:
    """How a row's finished runs stepped ("batch 64, lr x 0.25 (linear scaling from batch 256)",
    "batch 256, the schedule's lr"); None for runs that do not record it."""
    if fin.empty or "hp.batch_size" not in fin or "hp.lr_factor" not in fin:
        return None
    batch = one_value(fin["hp.batch_size"], "batch sizes", row)
    factor = one_value(fin["hp.lr_factor"], "learning-rate factors", row)
    scaling = one_value(fin["hp.lr_scaling"], "lr_scaling switches", row) if "hp.lr_scaling" in fin else None
    if batch is None or factor is None:
        return None
    if float(factor) != 1.0:
        source = f"linear scaling from batch {round(batch / factor)}"
        return f"batch {int(batch)}, lr x {float(factor):g} ({source})"
    return f"batch {int(batch)}, the schedule's lr" + (" (lr_scaling none)" if scaling == "none" else "")
