"""Build one reproduction table: our runs per row, summarised over seeds, next to the paper.

:func:`build_table` returns a numeric DataFrame (one row per spec row, in spec order); the
writers in :mod:`gmsop.aggregate.writers` turn it into CSV, Markdown, HTML and LaTeX. Columns:

=====================  ===================================================================
``method``             the row's label (spec ``label``, else the variant, "*" for star rows)
``n``                  finished runs averaged; ``n_unfinished`` started but not finished;
                       ``n_nonfinite`` finished with a NaN/inf error; ``seeds`` "0;1;2"
``dim``, ``dim_paper``  representation size (ours from the runs; the paper's)
``params_m``           our parameter count in millions (runs, else the benchmark file)
``params_paper_m``     published count (:func:`paper_values.paper_params`) and its source
``top1_mean/_std``     top-1 error (%), mean and sample std over seeds; likewise top-5
``top1_paper``         published error; ``top1_delta`` = ours - paper (positive: we are worse)
``fps``, ``fps_rel``   training images/s and its ratio to the baseline row; ``fps_source`` says
                       whether it is the benchmark median (bench) or the runs' mean (train)
``fps_paper[_rel]``    speed the text quotes (GTX 1080) and its ratio to the baseline row
=====================  ===================================================================

A row without finished runs keeps NaN in every measured column and ``n = 0``; nothing is ever
filled in from the paper. Rows whose runs mix datasets, protocols or architectures, or repeat a
seed, raise ``ValueError``: averaging those would make the number meaningless.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from gmsop.aggregate import paper_values as pv
from gmsop.aggregate.orderings import check_orderings, parse_orderings
from gmsop.aggregate.spec import FPS_SOURCES, RowSpec, TableSpec, apply_where, parse_rows, single_value, check_unique_seeds
from gmsop.aggregate.stats import summarize

__all__ = ["build_table", "build_table_from_spec", "TABLE_COLUMNS", "resolve_baseline"]

#: Columns of a built table, in order (also the CSV columns).
TABLE_COLUMNS: tuple[str, ...] = (
    "table", "row", "method", "variant", "backbone", "tag", "dataset", "protocol",
    "n", "n_unfinished", "n_nonfinite", "seeds", "dim", "dim_paper", "params_m", "params_paper_m",
    "top1_mean", "top1_std", "top5_mean", "top5_std", "top1_paper", "top5_paper",
    "top1_delta", "top5_delta", "fps", "fps_rel", "fps_paper", "fps_paper_rel", "fps_source",
    "fps_device", "train_time_s_mean", "paper_source", "params_paper_source",
)

#: Paper tables whose setting (ResNet-18 family, 64x64 ImageNet, GTX 1080) the quoted training
#: speeds belong to. Table 4 (Places365, 96x96 crops) was timed differently, if at all.
_FPS_PAPER_TABLES = ("table2", "table3", "fig3")

_DEFAULT = object()


def _only(values: pd.Series, what: str, table_id: str, row: RowSpec, hint: str):
    return single_value(values, what, f"table {table_id!r}, row {row.key}", hint)


def resolve_baseline(rows: tuple[RowSpec, ...], baseline: Any) -> int | None:
    """Index of the baseline row: ``None``; a variant name (must match one row); or a
    ``(variant, backbone[, tag])`` sequence / mapping matched on the row key."""
    if baseline is None:
        return None
    if isinstance(baseline, str):
        hits = [i for i, r in enumerate(rows) if r.variant == baseline or r.label == baseline]
    else:
        key = RowSpec.parse(baseline).key
        hits = [i for i, r in enumerate(rows) if r.key == key]
    if len(hits) != 1:
        where = "matches no row" if not hits else f"matches {len(hits)} rows; give [variant, backbone, tag]"
        raise ValueError(f"baseline {baseline!r} {where}; rows are {[r.key for r in rows]}")
    return hits[0]


def _bench_fps(bench: pd.DataFrame, row: RowSpec, table_id: str) -> tuple[float, str | None, float]:
    """Median training img/s over the row's benchmark files, their device, and their params."""
    sel = apply_where(bench, {"variant": row.variant, "backbone": row.backbone, **dict(row.bench_where)}, "bench")
    if sel.empty:
        return float("nan"), None, float("nan")
    device = _only(sel["device_name"].fillna(sel["device"]), "benchmark devices", table_id, row,
                   "restrict the table's bench_where to one device")
    _only(sel["input_size"], "benchmark input sizes", table_id, row,
          "restrict the table's bench_where to one input_size")
    params = _only(sel["params"], "benchmark parameter counts", table_id, row,
                   "the benchmarked architectures differ")
    return float(sel["train_img_s"].median()), device, float(params)


def build_table(
    runs_df: pd.DataFrame,
    bench_df: pd.DataFrame | None,
    rows: Iterable[Any],
    table_id: str,
    baseline: Any = None,
    *,
    paper_table: str | None | object = _DEFAULT,
    where: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    bench_where: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    fps_source: str = "auto",
    title: str = "",
    caption: str = "",
    orderings: Iterable[Any] = (),
) -> pd.DataFrame:
    """Summarise ``runs_df`` (from :func:`load.load_runs`) into the rows ``rows`` of one table.

    Args:
        runs_df: one row per training run.
        bench_df: one row per benchmark file (:func:`load.load_bench`), or None.
        rows: ordered row specs, ``(variant, backbone[, tag])`` or mappings (see :mod:`spec`).
        table_id: name of the table ("table2", "ablation_protocol", ...), stored in the output.
        baseline: the row FPS ratios are taken against (variant name or row key), or None.
        paper_table: paper table to compare with; default ``table_id`` when it is a paper table.
        where: filters applied to every row's runs (e.g. ``{"dataset": "imagenet64"}``).
        bench_where: filters applied to the benchmark files (e.g. ``{"device": "cuda"}``).
        fps_source: "bench", "train" or "auto" (bench if any benchmark file is left after
            ``bench_where``, else train); one source for the whole table, never mixed.
        title, caption: stored in ``df.attrs`` for the writers.
        orderings: claims ``"A < B"`` (row labels, :mod:`orderings`) checked on the runs; the
            result is stored as records in ``df.attrs["orderings"]``.
    """
    rows = parse_rows(rows)
    if paper_table is _DEFAULT:
        paper_table = table_id if table_id in pv.TABLES else None
    if paper_table is not None and paper_table not in pv.TABLES:
        raise ValueError(f"paper_table {paper_table!r} is not one of {pv.TABLES}")
    if fps_source not in FPS_SOURCES:
        raise ValueError(f"fps_source {fps_source!r} is not one of {FPS_SOURCES}")
    base_idx = resolve_baseline(rows, baseline)
    where = tuple(dict(where).items())
    bench = bench_df if bench_df is not None else pd.DataFrame(columns=["variant", "backbone"])
    bench = apply_where(bench, dict(bench_where), "bench")
    source = ("bench" if not bench.empty else "train") if fps_source == "auto" else fps_source

    out = []
    errors: dict[str, list[float]] = {}  # row label -> top-1 errors of its finished runs
    for i, row in enumerate(rows):
        sel = apply_where(runs_df, row.run_filter(where))
        fin = sel[sel["finished"]] if not sel.empty else sel
        hint = "add it to the table's or the row's 'where'"
        dataset = _only(sel["dataset"], "datasets", table_id, row, hint) if not sel.empty else None
        protocol = _only(sel["protocol"], "protocols", table_id, row, hint) if not sel.empty else None
        check_unique_seeds(fin, [], f"table {table_id!r}, row {row.key}",
                           f"the runs differ in something the row does not pin down; {hint}")
        params = _only(sel["params"], "parameter counts", table_id, row, "these are different models") \
            if not sel.empty else None
        dim = _only(sel["rep_dim"], "representation sizes", table_id, row, "these are different models") \
            if not sel.empty else None
        b_fps, b_device, b_params = _bench_fps(bench, row, table_id) if not bench.empty else (np.nan, None, np.nan)
        if params is None and np.isfinite(b_params):
            params = b_params
        top1, top5 = summarize(fin["top1_err"]), summarize(fin["top5_err"])
        nonfinite = int((~np.isfinite(fin[["top1_err", "top5_err"]].to_numpy(float))).any(axis=1).sum()) \
            if not fin.empty else 0
        if source == "bench":
            fps, fps_device = b_fps, b_device
        else:
            t = summarize(fin["train_img_s"]) if not fin.empty else summarize([])
            fps = t.mean
            fps_device = _only(fin["env.device_name"].fillna(fin["env.device"]), "training devices",
                               table_id, row, hint) if not fin.empty else None

        p_variant, p_backbone, p_tag = row.paper_key()
        paper = pv.paper_value(paper_table, p_variant, p_backbone, p_tag) if paper_table else None
        p_params = pv.paper_params(p_variant, p_backbone)
        p_fps = pv.paper_train_fps(p_variant, p_backbone) if paper_table in _FPS_PAPER_TABLES else None
        top1_paper = paper.top1_err if paper and paper.top1_err is not None else np.nan
        top5_paper = paper.top5_err if paper and paper.top5_err is not None else np.nan
        errors[row.method] = fin["top1_err"].tolist() if not fin.empty else []
        out.append({
            "table": table_id, "row": i,
            "method": row.method,
            "variant": row.variant, "backbone": row.backbone, "tag": row.tag,
            "dataset": dataset, "protocol": protocol,
            "n": top1.n, "n_unfinished": int(len(sel) - len(fin)), "n_nonfinite": nonfinite,
            "seeds": ";".join(str(s) for s in sorted(fin["seed"])) if not fin.empty else "",
            "dim": dim, "dim_paper": paper.dim if paper else None,
            "params_m": params / 1e6 if params is not None else np.nan,
            "params_paper_m": p_params[0] if p_params else np.nan,
            "top1_mean": top1.mean, "top1_std": top1.std, "top5_mean": top5.mean, "top5_std": top5.std,
            "top1_paper": top1_paper, "top5_paper": top5_paper,
            "top1_delta": top1.mean - top1_paper, "top5_delta": top5.mean - top5_paper,
            "fps": fps, "fps_paper": p_fps[0] if p_fps else np.nan,
            "fps_source": source, "fps_device": fps_device,
            "train_time_s_mean": summarize(fin["train_time_s"]).mean if not fin.empty else np.nan,
            "paper_source": paper.source if paper else "",
            "params_paper_source": p_params[1] if p_params else "",
        })

    df = pd.DataFrame(out)
    for col, ref in (("fps_rel", "fps"), ("fps_paper_rel", "fps_paper")):
        df[col] = df[ref] / df.loc[base_idx, ref] if base_idx is not None else np.nan
    df = df[list(TABLE_COLUMNS)]
    for col in ("dim", "dim_paper"):
        df[col] = pd.array(df[col].tolist(), dtype="Int64")
    float_cols = [c for c in TABLE_COLUMNS if c != "dim_paper"
                  and (c == "fps" or c.endswith(("_m", "_mean", "_std", "_paper", "_delta", "_rel")))]
    df[float_cols] = df[float_cols].astype(float)
    claims = parse_orderings([str(o) for o in orderings], list(errors), f"table {table_id!r}: orderings")
    df.attrs.update(
        orderings=check_orderings(errors, claims).to_dict("records"),
        table_id=table_id, paper_table=paper_table, title=title, caption=caption,
        baseline=df.loc[base_idx, "method"] if base_idx is not None else None, fps_source=source,
    )
    return df


def build_table_from_spec(runs_df: pd.DataFrame, bench_df: pd.DataFrame | None, spec: TableSpec) -> pd.DataFrame:
    """:func:`build_table` with every option taken from a :class:`spec.TableSpec`."""
    return build_table(
        runs_df, bench_df, spec.rows, spec.table_id, spec.baseline, paper_table=spec.paper_table,
        where=spec.where, bench_where=spec.bench_where, fps_source=spec.fps_source,
        title=spec.title, caption=spec.caption, orderings=spec.orderings,
    )
