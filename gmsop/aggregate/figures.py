"""The paper's figures from our runs: routing balance, the α sweep, the N x K grid, training curves.

* :func:`plot_routing` - Figure 2 (left): samples each mixture component received in the last
  epoch, α = 0 against α = 100, grouped bars.
* :func:`plot_alpha_sweep` - Figure 2 (right): top-1 error against α (symmetric-log axis, so 0
  fits), mean ± std over seeds, single seeds as dots.
* :func:`plot_nk_grid` - Figure 3: GM-GAP over N and K, error (left) and training speed (right)
  against N, one line per K.
* :func:`plot_training_curves` - validation top-1 error and training loss per epoch, one line per
  variant, band = ± 1 std over seeds.

Each returns a :class:`matplotlib.figure.Figure` drawn on an Agg canvas (never pyplot, so nothing
opens a window, no global figure state leaks, and it works headless); :func:`save_figure` writes
it as SVG and PNG, atomically. Paper values are drawn as black stars only where the paper prints
a number (:mod:`paper_values`); a speed quoted for a GTX 1080 is only drawn as a ratio.

Component identity is arbitrary across seeds (component 3 of one run has nothing to do with
component 3 of another), so routing bars are, by default, ranked by load within each run before
averaging over seeds; ``order="index"`` shows raw indices and then needs one run per α.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gmsop.aggregate import paper_values as pv
from gmsop.aggregate._atomic import atomic_write
from gmsop.aggregate.load import select_epoch
from gmsop.aggregate.spec import RowSpec, apply_where, check_unique_seeds, parse_rows, single_value
from gmsop.aggregate.stats import summarize_groups

__all__ = ["plot_routing", "plot_alpha_sweep", "plot_nk_grid", "plot_training_curves",
           "save_figure", "figure_paths", "FIGURE_FORMATS"]

#: Formats :func:`save_figure` accepts (by file suffix).
FIGURE_FORMATS = (".svg", ".png", ".pdf")

_PAPER_STYLE = dict(marker="*", s=160, color="black", zorder=5, edgecolor="white", linewidth=0.6)
_RC = {"svg.hashsalt": "gmsop", "svg.fonttype": "path", "axes.titleweight": "bold"}


@contextlib.contextmanager
def _style():
    """seaborn's whitegrid/notebook look, applied only while a figure is drawn or saved."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.9), **_RC}
    with matplotlib.rc_context(rc):
        yield


def _figure(ncols: int = 1, width: float = 6.4, height: float = 4.2) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _fmt_num(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() else f"{x:g}"


def _context(df: pd.DataFrame, what: str) -> str:
    """'dataset, protocol' of the runs plotted, refusing mixtures (for titles)."""
    hint = "narrow the selection with where={...}"
    parts = [single_value(df[c], f"{c}s", what, hint) for c in ("dataset", "protocol") if c in df]
    return ", ".join(str(p) for p in parts if p is not None)


def _need_column(df: pd.DataFrame, col: str, what: str) -> None:
    if col not in df.columns:
        raise ValueError(f"{what}: the runs have no column {col!r} (hyper-parameters are 'hp.<name>'); "
                         f"columns: {', '.join(map(str, df.columns))}")


# ---------------------------------------------------------------------------------------------
# Figure 2 (left): routing balance.

def plot_routing(
    routing_df: pd.DataFrame,
    variant: str = "GM-GAP-16-4",
    alphas: Sequence[float] = (0, 100),
    *,
    backbone: str = "resnet18",
    alpha_col: str = "hp.alpha",
    order: str = "rank",
    where: dict[str, Any] | None = None,
) -> Figure:
    """Grouped bars of samples per component in each run's last epoch, one colour per α."""
    what = f"routing figure ({variant}, {backbone})"
    if order not in ("rank", "index"):
        raise ValueError(f"order must be 'rank' or 'index', got {order!r}")
    df = apply_where(routing_df, {"variant": variant, "backbone": backbone, **(where or {})}, "routing")
    if df.empty:
        raise ValueError(f"{what}: no routing counts (is {variant!r} a gated mixture, and has it run?)")
    _need_column(df, alpha_col, what)
    df = select_epoch(df, "last")
    have = sorted(df[alpha_col].dropna().unique().tolist())
    missing = [a for a in alphas if not np.isclose(have, a).any()]
    if missing:
        raise ValueError(f"{what}: no runs with {alpha_col} in {missing}; available: {have}")
    df = df[df[alpha_col].isin(list(alphas))].copy()
    ctx = _context(df, what)
    runs_per_alpha = df.groupby(alpha_col)["path"].nunique()
    if order == "index" and (runs_per_alpha > 1).any():
        raise ValueError(f"{what}: order='index' needs one run per α (component ids differ between "
                         f"runs), got {runs_per_alpha.to_dict()}; pass where={{'seed': 0}} or order='rank'")
    if order == "rank":
        df["x"] = df.groupby("path")["count"].rank(method="first", ascending=False).astype(int)
        xlabel = "component, ranked by samples received (1 = most)"
    else:
        df["x"] = df["component"] + 1
        xlabel = "component index"
    df["α"] = [f"α = {_fmt_num(a)}" + (" (no balance loss)" if a == 0 else "") for a in df[alpha_col]]
    hue_order = [f"α = {_fmt_num(a)}" + (" (no balance loss)" if a == 0 else "") for a in alphas]
    with _style():
        fig, (ax,) = _figure(width=max(6.4, 0.32 * df["x"].nunique() + 2.5))
        sns.barplot(data=df, x="x", y="count", hue="α", hue_order=hue_order, errorbar="sd",
                    palette="colorblind", ax=ax, err_kws={"linewidth": 1.0})
        ax.axhline(df["count"].mean(), color="0.3", linestyle="--", linewidth=1.0, label="perfectly balanced")
        n = ", ".join(f"{_fmt_num(a)}: {runs_per_alpha[a]}" for a in alphas)
        ax.set(xlabel=xlabel, ylabel="samples routed in the last epoch",
               title=f"Figure 2 (left): load per component, {variant} + {pv.backbone_name(backbone)}")
        ax.legend(title=f"runs per α: {n}" + ("; bars: mean ± std" if (runs_per_alpha > 1).any() else ""),
                  fontsize="small", title_fontsize="small")
        if ctx:
            fig.text(0.99, 0.005, ctx, ha="right", va="bottom", fontsize="x-small", color="0.4")
    return fig


# ---------------------------------------------------------------------------------------------
# Figure 2 (right): the α sweep.

def _paper_alpha_points(variant: str, backbone: str) -> list[tuple[float, float, str]]:
    """(α, top-1, label) the paper prints for ``variant``: Figure 2 right has no numbers; the
    comparison tables were all trained with α = 100, so a Table 2 row gives the α = 100 point."""
    pts = [(100.0, v.top1_err, "paper, Fig. 2 right") for v in pv.paper_rows("fig2_right")
           if v.variant == variant and v.backbone == backbone and v.top1_err is not None]
    t2 = pv.paper_value("table2", variant, backbone)
    if not pts and t2 is not None and t2.top1_err is not None:
        pts.append((100.0, t2.top1_err, "paper, Table 2 (α = 100)"))
    return pts


def plot_alpha_sweep(
    runs_df: pd.DataFrame,
    variant: str = "GM-GAP-16-4",
    *,
    backbone: str = "resnet18",
    alpha_col: str = "hp.alpha",
    where: dict[str, Any] | None = None,
) -> Figure:
    """Top-1 error against the balance-loss weight α: mean ± std over seeds, seeds as dots."""
    what = f"alpha sweep ({variant}, {backbone})"
    df = apply_where(runs_df, {"variant": variant, "backbone": backbone, **(where or {})})
    df = df[df["finished"]] if not df.empty else df
    if df.empty:
        raise ValueError(f"{what}: no finished runs")
    _need_column(df, alpha_col, what)
    ctx = _context(df, what)
    check_unique_seeds(df, [alpha_col], what, "narrow the selection with where={...}")
    summary = summarize_groups(df, [alpha_col], ["top1_err"])
    xs = summary[alpha_col].to_numpy(float)
    positive = xs[xs > 0]
    linthresh = float(positive.min()) if positive.size else 1.0
    with _style():
        fig, (ax,) = _figure()
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.6)
        ax.scatter(df[alpha_col], df["top1_err"], s=14, color="0.6", zorder=2, label="single seed")
        ax.errorbar(xs, summary["top1_err_mean"], yerr=summary["top1_err_std"].fillna(0.0), marker="o",
                    capsize=3, color=sns.color_palette("colorblind")[0], zorder=3, label="ours, mean ± std")
        for x, y, n in zip(xs, summary["top1_err_mean"], summary["n"]):
            if math.isfinite(y):
                ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(5, 6), fontsize="x-small")
        for x, y, label in _paper_alpha_points(variant, backbone):
            ax.scatter([x], [y], label=label, **_PAPER_STYLE)
        ax.set_xticks(xs)
        ax.set_xticklabels([_fmt_num(x) for x in xs])
        ax.set(xlabel="balance-loss weight α (symmetric log scale)", ylabel="top-1 error (%)",
               title=f"Figure 2 (right): top-1 error vs α, {variant} + {pv.backbone_name(backbone)}")
        ax.legend(fontsize="small")
        if ctx:
            fig.text(0.99, 0.005, ctx, ha="right", va="bottom", fontsize="x-small", color="0.4")
    return fig


# ---------------------------------------------------------------------------------------------
# Figure 3: GM-GAP over N and K.

def _parse_nk(variants: Iterable[str], family: str) -> dict[str, tuple[int, int]]:
    pat = re.compile(rf"^{re.escape(family)}-(\d+)-(\d+)$")
    return {v: (int(m[1]), int(m[2])) for v in variants if (m := pat.match(str(v)))}


def plot_nk_grid(
    runs_df: pd.DataFrame,
    bench_df: pd.DataFrame | None = None,
    *,
    family: str = "GM-GAP",
    backbone: str = "resnet18",
    baseline: str | None = "ResNet-18-512d",
    where: dict[str, Any] | None = None,
    bench_where: dict[str, Any] | None = None,
) -> Figure:
    """Two panels against N (log2 axis), one line per K: top-1 error, and training speed.

    Speed is the benchmark median (``bench_df``) when there is one for every plotted variant,
    else the runs' mean measured throughput. With a ``baseline`` speed it is shown relative to
    the baseline (so the paper's 800/1470 Hz can be drawn as a ratio); otherwise in images/s.
    ``where`` filters the baseline's runs too, so filter on keys every run carries.
    """
    what = f"N x K figure ({family}, {backbone})"
    runs = apply_where(runs_df, {"backbone": backbone, **(where or {})})
    runs = runs[runs["finished"]] if not runs.empty else runs
    nk = _parse_nk(runs["variant"].unique() if not runs.empty else [], family)
    if not nk:
        have = sorted(runs["variant"].unique()) if not runs.empty else []
        raise ValueError(f"{what}: no finished runs named '{family}-<N>-<K>'; variants present: {have}")
    grid = runs[runs["variant"].isin(list(nk))].copy()
    ctx = _context(grid, what)
    grid["N"] = [nk[v][0] for v in grid["variant"]]
    grid["K"] = [nk[v][1] for v in grid["variant"]]
    check_unique_seeds(grid, ["variant"], what, "narrow the selection with where={...}")
    err = summarize_groups(grid, ["N", "K"], ["top1_err", "train_img_s"])

    bench = apply_where(bench_df, {"backbone": backbone, **(bench_where or {})}, "bench") \
        if bench_df is not None else pd.DataFrame(columns=["variant", "train_img_s"])
    bench_fps = bench.groupby("variant")["train_img_s"].median() if not bench.empty else pd.Series(dtype=float)
    use_bench = all(v in bench_fps.index for v in nk)
    err["fps"] = [bench_fps[f"{family}-{n}-{k}"] if use_bench else m
                  for n, k, m in zip(err["N"], err["K"], err["train_img_s_mean"])]
    base_err = base_fps = float("nan")
    if baseline:
        b = runs[runs["variant"] == baseline]
        if not b.empty:
            base_err = float(b["top1_err"].mean())
            base_fps = float(bench_fps.get(baseline, np.nan)) if use_bench else float(b["train_img_s"].mean())
    relative = math.isfinite(base_fps) and base_fps > 0
    if relative:
        err["fps"] = err["fps"] / base_fps

    paper = [(nk_, v) for v in pv.paper_rows("fig3") if (nk_ := _parse_nk([v.variant], family).get(v.variant))
             and v.backbone == backbone]
    paper_base = pv.paper_value("fig3", baseline, backbone) if baseline else None

    ks = sorted(err["K"].unique())
    palette = dict(zip(ks, sns.color_palette("colorblind", len(ks))))
    with _style():
        fig, (ax_e, ax_f) = _figure(ncols=2, height=4.8)
        for k in ks:
            sub = err[err["K"] == k].sort_values("N")
            ax_e.errorbar(sub["N"], sub["top1_err_mean"], yerr=sub["top1_err_std"].fillna(0.0), marker="o",
                          capsize=3, color=palette[k], label=f"K = {k}")
            ax_f.plot(sub["N"], sub["fps"], marker="o", color=palette[k], label=f"K = {k}")
        if math.isfinite(base_err):
            ax_e.axhline(base_err, color="0.35", linestyle="--", linewidth=1, label=f"{baseline} (ours)")
        if paper_base is not None and paper_base.top1_err is not None:
            ax_e.axhline(paper_base.top1_err, color="black", linestyle=":", linewidth=1,
                         label=f"{baseline} (paper)")
        for i, ((n, k), v) in enumerate(paper):
            ax_e.scatter([n], [v.top1_err], label="paper (text)" if i == 0 else None, **_PAPER_STYLE)
            ax_e.annotate(f"N={n},K={k}", (n, v.top1_err), textcoords="offset points", xytext=(6, -10),
                          fontsize="x-small")
        if relative and paper_base is not None and paper_base.train_fps:
            pts = [(n, k, v.train_fps / paper_base.train_fps) for (n, k), v in paper if v.train_fps]
            for i, (n, k, r) in enumerate(pts):
                ax_f.scatter([n], [r], label="paper (GTX 1080)" if i == 0 else None, **_PAPER_STYLE)
                ax_f.annotate(f"N={n},K={k}", (n, r), textcoords="offset points", xytext=(6, -10),
                              fontsize="x-small")
            ax_f.axhline(1.0, color="0.35", linestyle="--", linewidth=1, label=f"{baseline} (= 1)")
        ns = sorted(set(err["N"]) | {n for (n, _k), _v in paper})
        for ax in (ax_e, ax_f):
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns)
            ax.set_xticklabels([str(n) for n in ns])
            ax.set_xlabel("number of components N (log scale)")
            ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
        ax_e.set(ylabel="top-1 error (%)", title="top-1 error (mean ± std over seeds)")
        source = "benchmark" if use_bench else "training runs"
        if relative:
            ax_f.set(ylabel=f"training speed relative to {baseline} (×)", title=f"training speed ({source})")
        else:
            ax_f.set(ylabel="training images / s", title=f"training speed ({source})")
        fig.suptitle(f"Figure 3: {family} with various N and K, {pv.backbone_name(backbone)}"
                     + (f" ({ctx})" if ctx else ""), fontweight="bold")
    return fig


# ---------------------------------------------------------------------------------------------
# Training curves.

def plot_training_curves(
    epochs_df: pd.DataFrame,
    rows: Iterable[Any] | None = None,
    *,
    where: dict[str, Any] | None = None,
    title: str = "Training curves",
) -> Figure:
    """Validation top-1 error and training loss per epoch; one line per row, band = ± 1 std.

    ``rows`` are table row specs (``(variant, backbone[, tag])`` or mappings); by default every
    (variant, backbone) in ``epochs_df``. Rows without data are listed under the plot; if no row
    has data the call raises ``ValueError``.
    """
    if rows is None:
        if epochs_df.empty:
            raise ValueError("training curves: no epochs to plot")
        keys = epochs_df[["variant", "backbone"]].drop_duplicates().sort_values(["variant", "backbone"])
        rows = [tuple(k) for k in keys.itertuples(index=False)]
    specs: tuple[RowSpec, ...] = parse_rows(rows)
    multi_backbone = len({r.backbone for r in specs}) > 1
    parts, absent = [], []
    for r in specs:
        sel = apply_where(epochs_df, r.run_filter(where or {}), "epochs")
        name = r.label or (r.variant + ("*" if r.tag == pv.STAR else ""))
        if multi_backbone:
            name += f" + {pv.backbone_name(r.backbone)}"
        if sel.empty:
            absent.append(name)
            continue
        _context(sel, f"training curves, row {r.key}")
        parts.append(sel.assign(method=f"{name} (n={sel['path'].nunique()})"))
    if not parts:
        raise ValueError(f"training curves: no epochs for any of the rows {[r.key for r in specs]}")
    data = pd.concat(parts, ignore_index=True)
    order = list(dict.fromkeys(data["method"]))
    palette = sns.color_palette("colorblind" if len(order) <= 10 else "husl", len(order))
    with _style():
        fig, (ax_v, ax_l) = _figure(ncols=2)
        for ax, col, label in ((ax_v, "val_top1_err", "validation top-1 error (%)"),
                               (ax_l, "train_loss", "training loss (cross-entropy + balance)")):
            sns.lineplot(data=data, x="epoch", y=col, hue="method", hue_order=order, palette=palette,
                         errorbar="sd", ax=ax, legend=ax is ax_v)
            ax.set(xlabel="epoch", ylabel=label)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_v.set_title("validation top-1 error")
        ax_l.set_title("training loss")
        ax_v.legend(title="variant (seeds)", fontsize="small", title_fontsize="small")
        fig.suptitle(title, fontweight="bold")
        if absent:
            fig.text(0.01, 0.005, "no runs yet: " + ", ".join(absent), fontsize="x-small", color="0.4")
    return fig


# ---------------------------------------------------------------------------------------------
# Saving.

def figure_paths(stem: str | os.PathLike, formats: Sequence[str] = (".svg", ".png")) -> list[Path]:
    """``stem`` + each suffix: ``figure_paths("results/fig3")`` -> [fig3.svg, fig3.png]."""
    stem = Path(stem)
    return [stem.with_name(stem.name + f) for f in formats]


def save_figure(fig: Figure, paths: Iterable[str | os.PathLike], dpi: int = 150) -> list[Path]:
    """Write ``fig`` to every path (format from the suffix: .svg, .png, .pdf), each atomically.

    All formats are rendered in memory first, so a failure leaves none of them half-written.
    Output is reproducible: fixed SVG ids and no creation date in the metadata.
    """
    paths = [Path(p) for p in paths]
    bad = [str(p) for p in paths if p.suffix.lower() not in FIGURE_FORMATS]
    if bad or not paths:
        raise ValueError(f"figure paths must end in one of {FIGURE_FORMATS}; got {bad or 'none'}")
    blobs = []
    with _style():
        for p in paths:
            fmt = p.suffix.lower()[1:]
            meta = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {"Software": None}}[fmt]
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
            blobs.append(buf.getvalue())
    return [atomic_write(p, b) for p, b in zip(paths, blobs)]
