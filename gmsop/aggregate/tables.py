"""Build one reproduction table (numbers; :mod:`writers` formats it) from a planned experiment.

One row per planned row: its finished runs' errors (mean, sample std, non-finite counts), whether
it learned and its failed seeds, size and parameters beside the paper's (full width only), the
published error and Δ only where it ran in the paper's setting in full (:meth:`Row.paper_setting_gaps`),
ranks and Kendall τ (``attrs["rank_agreement"]``), training speed and its ratio to the baseline.
A row without finished runs keeps NaN: nothing is filled in from the paper. The experiment's
claims, tested on the same runs, are in ``attrs["claims"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gmsop import paper_values as pv
from gmsop.aggregate.claims import evaluate_claims, failed_seeds, kendall_agreement, ranks
from gmsop.aggregate.select import one_value, row_bench, row_runs, step_size
from gmsop.aggregate.stats import summarize
from gmsop.experiments import Experiment, Row

#: Columns of a built table, in order (also the CSV columns).
TABLE_COLUMNS: tuple[str, ...] = tuple(
    "table row method variant backbone dataset protocol width_mult n n_unfinished top1_nonfinite "
    "top5_nonfinite seeds classes learned n_failed failed_seeds dim dim_paper params_m "
    "params_paper_m top1_mean top1_std top5_mean top5_std top1_paper top5_paper top1_delta "
    "top5_delta paper_rank our_rank fps fps_rel fps_paper fps_paper_rel fps_source fps_device "
    "train_time_s_mean paper_source params_paper_source".split()
)

#: The paper's tables a table experiment may name as ``paper``.
PAPER_TABLES = ("table2", "table3", "table4")

#: Paper tables whose setting (64x64 ImageNet, GTX 1080) the quoted training speeds belong to.
_FPS_PAPER_TABLES = ("table2", "table3")


def row_errors(
    runs: pd.DataFrame, experiment: Experiment
) -> tuple[dict[str, list[float]], dict[str, int | None], dict[str, list[int]]]:
    """Per row label: the top-1 errors of its finished runs, its dataset's number of classes, and
    the runs' seeds (in the errors' order)."""
    errors, classes, seeds = {}, {}, {}
    for row in experiment.rows:
        fin = row_runs(runs, row)
        errors[row.label] = fin["top1_err"].tolist() if not fin.empty else []
        seeds[row.label] = [int(s) for s in fin["seed"]] if not fin.empty else []
        c = one_value(fin["hp.num_classes"], "class counts", row) if not fin.empty else None
        classes[row.label] = int(c) if c is not None else None
    return errors, classes, seeds


def _fps(
    bench: pd.DataFrame | None, fin: pd.DataFrame, row: Row, source: str
) -> tuple[float, str | None, float]:
    """(images/s, device, params from the bench file) of one row from the chosen source."""
    b = row_bench(bench, row)
    b_params = float(one_value(b["params"], "benchmarked parameter counts", row)) if not b.empty else np.nan
    if source == "bench":
        if b.empty:
            return np.nan, None, b_params
        device = one_value(b["device_name"].fillna(b["device"]), "benchmark devices", row)
        return float(b["train_img_s"].median()), device, b_params
    if fin.empty:
        return np.nan, None, b_params
    device = one_value(fin["env.device_name"].fillna(fin["env.device"]), "training devices", row)
    return summarize(fin["train_img_s"]).mean, device, b_params


def _rank_agreement(df: pd.DataFrame) -> dict[str, Any]:
    """Kendall's τ between the paper's and our errors over the rows that have a published error and
    learned with no failed seed; the rows with a published error left out, with why."""
    keep, left_out = [], []
    for _, r in df[np.isfinite(df["_paper_top1"].astype(float))].iterrows():
        checks = (
            (r["n"] == 0, "no finished run"),
            (r["top1_nonfinite"] == r["n"], "diverged"),
            (not pd.isna(r["learned"]) and not r["learned"], "did not learn"),
            (r["n_failed"], f"{r['n_failed']} of {r['n']} seeds failed"),
        )
        why = next((w for bad, w in checks if bad), "")
        (left_out.append((r["method"], why)) if why else keep.append(r))
    paper = {r["method"]: r["_paper_top1"] for r in keep}
    ours = {r["method"]: r["top1_mean"] for r in keep}
    tau, n = kendall_agreement(paper, ours)
    return {"tau": tau, "n": n, "left_out": left_out, "_paper": paper, "_ours": ours}


def build_table(
    experiment: Experiment, runs: pd.DataFrame, bench: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Summarise the result files of ``experiment``'s rows (columns :data:`TABLE_COLUMNS`)."""
    paper_table = experiment.paper if experiment.paper in PAPER_TABLES else None
    paper_dataset = pv.TABLE_DATASETS.get(paper_table) if paper_table else None
    has_bench = (
        bench is not None and not bench.empty and any(not row_bench(bench, r).empty for r in experiment.rows)
    )
    source = "bench" if has_bench else "train"
    out = []
    errors: dict[str, list[float]] = {}  # row label -> top-1 errors of its finished runs (claims)
    class_of: dict[str, int | None] = {}
    steps: dict[str, str] = {}  # row label -> its batch and learning-rate scaling (a table note)
    for i, row in enumerate(experiment.rows):
        sel = row_runs(runs, row, finished=False)
        fin = sel[sel["finished"]] if not sel.empty else sel
        if (step := step_size(fin, row)) is not None:
            steps[row.label] = step
        params = one_value(sel["params"], "parameter counts", row) if not sel.empty else None
        dim = one_value(sel["rep_dim"], "representation sizes", row) if not sel.empty else None
        classes = one_value(fin["hp.num_classes"], "class counts", row) if not fin.empty else None
        fps, fps_device, b_params = _fps(bench, fin, row, source)
        if params is None and np.isfinite(b_params):
            params = b_params
        top1, top5 = summarize(fin["top1_err"]), summarize(fin["top5_err"])
        errors[row.label] = fin["top1_err"].tolist() if not fin.empty else []
        class_of[row.label] = int(classes) if classes is not None else None
        failed = failed_seeds(fin["top1_err"], class_of[row.label]) if not fin.empty else np.zeros(0, bool)
        failed_text = (
            ";".join(f"{int(s)}:{e:g}" for s, e, bad in zip(fin["seed"], fin["top1_err"], failed) if bad)
            if not fin.empty
            else ""
        )
        key = row.paper_key
        paper = pv.paper_value(paper_table, key[0], row.backbone, key[1]) if paper_table and key else None
        gaps = row.paper_setting_gaps(paper_dataset) if paper is not None else ()
        comparable = paper is not None and not gaps
        # parameters, dimension and speed describe the architecture: comparable at full width only
        same_net = bool(key) and row.width_mult is not None and float(row.width_mult) == 1.0
        p_params = pv.paper_params(key[0], row.backbone) if same_net else None
        fps_quoted = same_net and paper_table in _FPS_PAPER_TABLES
        p_fps = pv.TRAIN_FPS.get((key[0], row.backbone)) if fps_quoted else None
        top1_paper = paper.top1_err if comparable and paper.top1_err is not None else np.nan
        top5_paper = paper.top5_err if comparable and paper.top5_err is not None else np.nan
        out.append(
            {
                "table": experiment.name,
                "row": i,
                "method": row.label,
                **{k: getattr(row, k) for k in ("variant", "backbone", "dataset", "protocol", "width_mult")},
                "n": top1.n,
                "n_unfinished": int(len(sel) - len(fin)),
                "top1_nonfinite": top1.n_nonfinite,
                "top5_nonfinite": top5.n_nonfinite,
                "seeds": ";".join(str(s) for s in sorted(fin["seed"])) if not fin.empty else "",
                "classes": classes,
                "learned": bool(not failed.all()) if classes is not None and top1.n else None,
                "n_failed": int(failed.sum()),
                "failed_seeds": failed_text,
                "_setting_gaps": "; ".join(gaps),
                "dim": dim,
                "dim_paper": paper.dim if paper and same_net else None,
                "params_m": params / 1e6 if params is not None else np.nan,
                "params_paper_m": p_params[0] if p_params else np.nan,
                "top1_mean": top1.mean,
                "top1_std": top1.std,
                "top5_mean": top5.mean,
                "top5_std": top5.std,
                "top1_paper": top1_paper,
                "top5_paper": top5_paper,
                "top1_delta": top1.mean - top1_paper,
                "top5_delta": top5.mean - top5_paper,
                "_paper_top1": paper.top1_err if paper and paper.top1_err is not None else np.nan,
                "fps": fps,
                "fps_paper": p_fps[0] if p_fps else np.nan,
                "fps_source": source,
                "fps_device": fps_device,
                "train_time_s_mean": summarize(fin["train_time_s"]).mean if not fin.empty else np.nan,
                "paper_source": paper.source if paper else "",
                "params_paper_source": p_params[1] if p_params else "",
            }
        )
    df = pd.DataFrame(out)
    agreement = _rank_agreement(df)
    paper_ranks, our_ranks = ranks(agreement.pop("_paper")), ranks(agreement.pop("_ours"))
    df["paper_rank"] = pd.array([paper_ranks.get(m) for m in df["method"]], dtype="Int64")
    df["our_rank"] = pd.array([our_ranks.get(m) for m in df["method"]], dtype="Int64")
    outside = {m: g for m, g, p in zip(df["method"], df["_setting_gaps"], df["_paper_top1"]) if g and p == p}
    base = [i for i, r in enumerate(experiment.rows) if r.label == experiment.baseline]
    for col, ref in (("fps_rel", "fps"), ("fps_paper_rel", "fps_paper")):
        df[col] = df[ref] / df.loc[base[0], ref] if base else np.nan
    df = df[list(TABLE_COLUMNS)]
    for col in ("dim", "dim_paper", "classes"):
        df[col] = pd.array([None if pd.isna(v) else int(v) for v in df[col]], dtype="Int64")
    df["learned"] = pd.array(df["learned"].tolist(), dtype="boolean")
    ends = ("_m", "_mean", "_std", "_paper", "_delta", "_rel")
    float_cols = [c for c in TABLE_COLUMNS if c != "dim_paper" and (c == "fps" or c.endswith(ends))]
    df[float_cols] = df[float_cols].astype(float)
    claims = evaluate_claims(experiment.claims, errors, class_of)
    df.attrs.update(
        claims=claims.to_dict("records"),
        table_id=experiment.name,
        paper_table=paper_table,
        paper_dataset=paper_dataset,
        title=experiment.title,
        caption="",
        rank_agreement=agreement if paper_table else None,
        outside_paper_setting=outside,
        baseline=experiment.baseline,
        fps_source=source,
        step_sizes=steps,
    )
    return df
