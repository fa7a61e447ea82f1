"""The paper's figures from a planned experiment and its result files.

Every coordinate comes from the planned row (``row.alpha``, ``row.num_experts``, ``row.k``) and
each ``plot_*`` draws exactly what its ``*_data`` returns, on an Agg canvas (never pyplot: no
global state). Paper values are black stars, only beside rows run in the paper's setting.
Component identity is arbitrary across seeds, so routing bars are ranked by load within each run
before averaging.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gmsop import paper_values as pv
from gmsop.aggregate.load import select_epoch
from gmsop.aggregate.select import row_bench, row_runs
from gmsop.aggregate.stats import summarize
from gmsop.atomic import atomic_write
from gmsop.backbones import paper_name
from gmsop.experiments import Experiment, Row
from gmsop.protocol import get_protocol, protocol_fields

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


def _one(rows: Sequence[Row], attr: str) -> str:
    """The rows' common value of ``attr``, or their distinct values joined (for titles)."""
    return " / ".join(dict.fromkeys(str(getattr(r, attr)) for r in rows))


def _backbones(rows: Sequence[Row]) -> str:
    return " / ".join(dict.fromkeys(paper_name(r.backbone) for r in rows))


def _variant_title(rows: Sequence[Row]) -> str:
    """'GM-GAP-16-4 + ResNet-18' for the rows' variant(s) and backbone(s)."""
    return f"{_one(rows, 'variant')} + {_backbones(rows)}"


def _context(rows: Sequence[Row]) -> str:
    """'dataset, protocol' of the planned rows (for a footnote)."""
    return f"{_one(rows, 'dataset')}, {_one(rows, 'protocol')}"


def _footnote(fig: Figure, text: str) -> None:
    fig.text(0.99, 0.005, text, ha="right", va="bottom", fontsize="x-small", color="0.4")


def _absent_note(fig: Figure, absent: list[str]) -> None:
    if absent:
        fig.text(0.01, 0.005, "no runs yet: " + ", ".join(absent), fontsize="x-small", color="0.4")


def _seeds(values: Iterable[int]) -> str:
    return ";".join(str(int(s)) for s in sorted(set(values)))


# Figure 2 (left): routing balance.


def _counts_rows(experiment: Experiment) -> list[Row]:
    """The rows Figure 2 (left) compares: one per α of ``experiment.counts_alphas``, in that order."""
    what = f"routing figure ({experiment.name})"
    if not experiment.counts_alphas:
        raise ValueError(
            f"{what}: the experiment lists no counts_alphas (the alphas whose routing to compare)"
        )
    rows = []
    for a in experiment.counts_alphas:
        hits = [r for r in experiment.rows if r.alpha is not None and math.isclose(r.alpha, a, abs_tol=1e-12)]
        if len(hits) != 1:
            have = [r.alpha for r in experiment.rows]
            raise ValueError(
                f"{what}: counts alpha {a:g} matches {len(hits)} rows (need one); the rows' alphas are {have}"
            )
        rows.append(hits[0])
    return rows


def routing_data(experiment: Experiment, routing: pd.DataFrame) -> pd.DataFrame:
    """Per (counts alpha, rank): mean and std over seeds of the samples the component of that rank
    (1 = most, within a run) received in the last epoch; a row without routing counts raises."""
    out = []
    for row in _counts_rows(experiment):
        sel = row_runs(routing, row)
        if sel.empty:
            raise ValueError(
                f"routing figure ({experiment.name}): row {row.label!r} (run {row.run}, seeds "
                f"{list(row.seeds)}) has no routing counts (no runs yet, or {row.variant!r} is not a "
                f"gated mixture)"
            )
        last = select_epoch(sel).copy()
        last["rank"] = last.groupby("path")["count"].rank(method="first", ascending=False).astype(int)
        for rank, grp in last.groupby("rank", sort=True):
            s = summarize(grp["count"])
            out.append((row.label, float(row.alpha), int(rank), s.mean, s.std, s.n, _seeds(grp["seed"])))
    return pd.DataFrame(out, columns=["label", "alpha", "rank", "count_mean", "count_std", "n", "seeds"])


def _alpha_name(alpha: float, batch: int | None = None) -> str:
    """'α = 100 (α/256 = 0.39)' where α weighs a batch-summed loss over ``batch`` images, else 'α = 100'."""
    if alpha == 0:
        return "α = 0 (no balance loss)"
    return f"α = {_fmt_num(alpha)}" + (f" (α/{batch} = {_fmt_eff(alpha / batch)})" if batch else "")


def _fmt_eff(x: float) -> str:
    return "0" if x == 0 else f"{x:.2g}"


def _alpha_scale(rows: Sequence[Row]) -> tuple[bool | None, int | None]:
    """(``alpha_per_batch``, batch size) of the rows, each None when unknown or not shared. With
    ``alpha_per_batch`` (``official``) α weighs the batch-summed loss: α/B against the mean one."""
    per, batch = set(), set()
    for r in rows:
        settings = getattr(r, "settings", None) or {}
        switches = {k: v for k, v in (settings.get("overrides") or {}).items() if k in protocol_fields()}
        try:
            per.add(bool(get_protocol(r.protocol, **switches).alpha_per_batch))
        except (ValueError, TypeError):
            per.add(None)
        batch.add(settings.get("batch_size"))
    scaled = per.pop() if len(per) == 1 else None
    b = batch.pop() if len(batch) == 1 else None
    return scaled, (int(b) if b else None)


def _alpha_axis(rows: Sequence[Row]) -> tuple[str, int | None]:
    """(axis label, B) of the α axis: B is set when every tick can show α/B next to α."""
    scaled, batch = _alpha_scale(rows)
    if scaled is True:
        per = f"α/{batch}" if batch else "α/B"
        label = "balance-loss weight α (symmetric log scale)\n" + (
            f"in brackets: {per}, its weight on the mean loss"
            if batch
            else f"official: α weighs the summed loss, {per} on the mean loss"
        )
        return label, batch
    if scaled is False:
        return "balance-loss weight α on the mean loss (symmetric log scale)", None
    return "balance-loss weight α (symmetric log scale)", None


def plot_routing(experiment: Experiment, routing: pd.DataFrame) -> Figure:
    """Grouped bars (one colour per counts alpha) of :func:`routing_data`: mean ± std over seeds."""
    data = routing_data(experiment, routing)
    rows = _counts_rows(experiment)
    alphas = [float(r.alpha) for r in rows]
    scaled, batch = _alpha_scale(rows)
    batch = batch if scaled else None
    ranks = sorted(data["rank"].unique())
    width = 0.8 / len(alphas)
    palette = sns.color_palette("colorblind", len(alphas))
    with _style():
        fig, (ax,) = _figure(width=max(6.4, 0.32 * len(ranks) + 2.5))
        for i, (row, alpha) in enumerate(zip(rows, alphas)):
            sub = data[data["label"] == row.label].sort_values("rank")
            x = sub["rank"].to_numpy(float) + (i - (len(alphas) - 1) / 2) * width
            err = sub["count_std"].to_numpy(float)
            bar = dict(width=width, color=palette[i], capsize=2, error_kw={"linewidth": 1.0})
            label = f"{_alpha_name(alpha, batch)}, n={int(sub['n'].max())}"
            yerr = np.nan_to_num(err) if np.isfinite(err).any() else None
            ax.bar(x, sub["count_mean"].to_numpy(float), yerr=yerr, label=label, **bar)
        balanced = float(data["count_mean"].mean())
        ax.axhline(balanced, color="0.3", linestyle="--", linewidth=1.0, label="perfectly balanced")
        ax.set_xticks(ranks, [str(r) for r in ranks])
        ax.set(
            xlabel="component, ranked by samples received (1 = most)",
            ylabel="samples routed in the last epoch",
            title=f"Figure 2 (left): load per component, {_variant_title(rows)}",
        )
        ax.legend(title="bars: mean ± std over seeds (n runs)", fontsize="small", title_fontsize="small")
        _footnote(fig, _context(rows))
    return fig


# Figure 2 (right): the α sweep.


def alpha_data(experiment: Experiment, runs: pd.DataFrame) -> pd.DataFrame:
    """Per row, sorted by alpha: mean and std of its finished runs' top-1 error and ``top1_errs``
    (each seed's, in seed order); a row without an alpha or finished runs raises."""
    what = f"alpha sweep ({experiment.name})"
    out = []
    for row in experiment.rows:
        if row.alpha is None:
            raise ValueError(
                f"{what}: row {row.label!r} ({row.variant}) has no balance-loss weight α (not a mixture)"
            )
        fin = row_runs(runs, row)
        if fin.empty:
            raise ValueError(
                f"{what}: row {row.label!r} (run {row.run}, seeds {list(row.seeds)}) has no finished runs"
            )
        fin = fin.sort_values("seed")
        s = summarize(fin["top1_err"])
        errs = tuple(fin["top1_err"].astype(float))
        out.append((row.label, float(row.alpha), s.n, _seeds(fin["seed"]), s.mean, s.std, errs))
    cols = ["label", "alpha", "n", "seeds", "top1_err_mean", "top1_err_std", "top1_errs"]
    df = pd.DataFrame(out, columns=cols)
    dup = df[df["alpha"].duplicated(keep=False)]
    if not dup.empty:
        raise ValueError(
            f"{what}: rows {dup['label'].tolist()} share alpha {dup['alpha'].iloc[0]:g}; one row per alpha"
        )
    return df.sort_values("alpha", kind="stable").reset_index(drop=True)


def _on_paper_data(rows: Sequence[Row], paper_table: str) -> bool:
    """Whether every row ran in the paper's setting, so its numbers may be drawn beside them."""
    return bool(rows) and all(r.in_paper_setting(pv.TABLE_DATASETS[paper_table]) for r in rows)


def _paper_alpha_points(rows: Sequence[Row]) -> list[tuple[float, float, str]]:
    """(α, top-1, label) the paper prints for the rows' variant: Figure 2 right has no numbers, but
    Table 2 was trained with α = 100, so its row gives the α = 100 point."""
    keys = {(r.paper_key, r.backbone) for r in rows if r.paper_key}
    if not _on_paper_data(rows, "fig2_right") or len(keys) != 1:
        return []
    (((variant, tag), backbone),) = keys
    t2 = pv.paper_value("table2", variant, backbone, tag)
    return [] if t2 is None or t2.top1_err is None else [(100.0, t2.top1_err, "paper, Table 2 (α = 100)")]


def plot_alpha_sweep(experiment: Experiment, runs: pd.DataFrame) -> Figure:
    """Top-1 error against the balance-loss weight α (:func:`alpha_data`): mean ± std, seeds as dots."""
    data = alpha_data(experiment, runs)
    rows = list(experiment.rows)
    xs = data["alpha"].to_numpy(float)
    positive = xs[xs > 0]
    linthresh = float(positive.min()) if positive.size else 1.0
    with _style():
        fig, (ax,) = _figure()
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.6)
        dots = [(a, e) for a, errs in zip(xs, data["top1_errs"]) for e in errs]
        ax.scatter(
            [a for a, _ in dots], [e for _, e in dots], s=14, color="0.6", zorder=2, label="single seed"
        )
        mean, std = data["top1_err_mean"].to_numpy(float), data["top1_err_std"].fillna(0.0).to_numpy(float)
        line = dict(marker="o", capsize=3, color=sns.color_palette("colorblind")[0], zorder=3)
        ax.errorbar(xs, mean, yerr=std, label="ours, mean ± std", **line)
        for x, y, n in zip(xs, data["top1_err_mean"], data["n"]):
            if math.isfinite(y):
                ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(5, 6), fontsize="x-small")
        for x, y, label in _paper_alpha_points(rows):
            ax.scatter([x], [y], label=label, **_PAPER_STYLE)
        xlabel, batch = _alpha_axis(rows)
        ax.set_xticks(xs, [_fmt_num(x) + (f"\n({_fmt_eff(x / batch)})" if batch else "") for x in xs])
        ax.set(
            xlabel=xlabel,
            ylabel="top-1 error (%)",
            title=f"Figure 2 (right): top-1 error vs α, {_variant_title(rows)}",
        )
        ax.legend(fontsize="small")
        _footnote(fig, _context(rows))
    return fig


# Figure 3: a mixture family over N and K.


def _grid_rows(experiment: Experiment) -> tuple[list[Row], Row | None]:
    """(the mixture rows, the baseline row or None). Rows without ``num_experts`` are baselines."""
    what = f"N x K figure ({experiment.name})"
    grid = [r for r in experiment.rows if r.num_experts is not None]
    if not grid:
        raise ValueError(f"{what}: no row is a mixture (every row has num_experts None)")
    no_k = [r.label for r in grid if r.k is None]
    if no_k:
        raise ValueError(f"{what}: rows {no_k} are mixtures without a gate (k is None); a grid needs N and K")
    seen: dict[tuple[int, int], str] = {}
    for r in grid:
        key = (int(r.num_experts), int(r.k))
        if key in seen:
            raise ValueError(f"{what}: rows {seen[key]!r} and {r.label!r} are both N={key[0]}, K={key[1]}")
        seen[key] = r.label
    base = experiment.row(experiment.baseline) if experiment.baseline else None
    return grid, base


def _row_speed(row: Row, fin: pd.DataFrame, bench: pd.DataFrame | None, use_bench: bool) -> float:
    if use_bench:
        b = row_bench(bench, row)
        return float(b["train_img_s"].median()) if not b.empty else float("nan")
    return summarize(fin["train_img_s"]).mean if not fin.empty else float("nan")


def grid_data(experiment: Experiment, runs: pd.DataFrame, bench: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per mixture row, sorted by K then N: top-1 error over finished runs, ``fps`` (median of its
    bench files when every mixture row has one, else the runs' mean) and ``speed`` (``fps`` over the
    baseline's when known: ``attrs["relative"]``); ``attrs`` also name the baseline and the rows
    without finished runs (``absent``). No finished run in any mixture row raises ``ValueError``."""
    grid, base = _grid_rows(experiment)
    fins = {r.label: row_runs(runs, r) for r in grid + ([base] if base is not None else [])}
    absent = [r.label for r in grid if fins[r.label].empty]
    if len(absent) == len(grid):
        raise ValueError(f"N x K figure ({experiment.name}): no finished runs for any of the rows {absent}")
    use_bench = bench is not None and all(not row_bench(bench, r).empty for r in grid)
    out = []
    for r in grid:
        fin = fins[r.label]
        s = summarize(fin["top1_err"])
        seeds = _seeds(fin["seed"]) if not fin.empty else ""
        fps = _row_speed(r, fin, bench, use_bench)
        out.append((r.label, int(r.num_experts), int(r.k), s.n, seeds, s.mean, s.std, fps))
    cols = ["label", "N", "K", "n", "seeds", "top1_err_mean", "top1_err_std", "fps"]
    df = pd.DataFrame(out, columns=cols).sort_values(["K", "N"], kind="stable").reset_index(drop=True)
    base_err = base_fps = float("nan")
    if base is not None:
        base_err = summarize(fins[base.label]["top1_err"]).mean
        base_fps = _row_speed(base, fins[base.label], bench, use_bench)
    relative = math.isfinite(base_fps) and base_fps > 0
    df["speed"] = df["fps"] / base_fps if relative else df["fps"]
    df.attrs.update(
        fps_source="bench" if use_bench else "train",
        relative=relative,
        baseline=base.label if base is not None else None,
        baseline_top1_err=base_err,
        baseline_fps=base_fps,
        absent=absent,
    )
    return df


def _fig3_value(row: Row) -> pv.PaperValue | None:
    """The number the text on Figure 3 quotes for ``row``, if it ran in the paper's setting."""
    if not row.paper_key or not _on_paper_data([row], "fig3"):
        return None
    return pv.paper_value("fig3", row.paper_key[0], row.backbone, row.paper_key[1])


def _paper_nk(ax, pts: list[tuple[int, int, float]], label: str) -> None:
    """The paper's (N, K, value) points as stars annotated with N and K; ``label`` on the first."""
    for i, (n, k, y) in enumerate(pts):
        ax.scatter([n], [y], label=label if i == 0 else None, **_PAPER_STYLE)
        ax.annotate(f"N={n},K={k}", (n, y), textcoords="offset points", xytext=(6, -10), fontsize="x-small")


def plot_nk_grid(experiment: Experiment, runs: pd.DataFrame, bench: pd.DataFrame | None = None) -> Figure:
    """Two panels against N (log2 axis), one line per K: top-1 error (mean ± std over seeds) and
    training speed, relative to the baseline row when it has one (:func:`grid_data`)."""
    data = grid_data(experiment, runs, bench)
    grid, base = _grid_rows(experiment)
    baseline = data.attrs["baseline"]
    relative = data.attrs["relative"]
    on_paper = _on_paper_data(grid, "fig3")
    paper = [(int(r.num_experts), int(r.k), v) for r in grid if on_paper and (v := _fig3_value(r))]
    paper_base = _fig3_value(base) if base is not None else None
    ks = sorted(data["K"].unique())
    palette = dict(zip(ks, sns.color_palette("colorblind", len(ks))))
    with _style():
        fig, (ax_e, ax_f) = _figure(ncols=2, height=4.8)
        for k in ks:
            sub = data[data["K"] == k].sort_values("N")
            n, line = sub["N"].to_numpy(float), dict(marker="o", color=palette[k], label=f"K = {k}")
            std = sub["top1_err_std"].fillna(0.0).to_numpy(float)
            ax_e.errorbar(n, sub["top1_err_mean"].to_numpy(float), yerr=std, capsize=3, **line)
            ax_f.plot(n, sub["speed"].to_numpy(float), **line)
        if math.isfinite(data.attrs["baseline_top1_err"]):
            ours = dict(color="0.35", linestyle="--", linewidth=1, label=f"{baseline} (ours)")
            ax_e.axhline(data.attrs["baseline_top1_err"], **ours)
        if paper_base is not None and paper_base.top1_err is not None:
            ax_e.axhline(
                paper_base.top1_err, color="black", linestyle=":", linewidth=1, label=f"{baseline} (paper)"
            )
        _paper_nk(ax_e, [(n, k, v.top1_err) for n, k, v in paper if v.top1_err is not None], "paper (text)")
        if relative:
            if paper_base is not None and paper_base.train_fps:
                pts = [(n, k, v.train_fps / paper_base.train_fps) for n, k, v in paper if v.train_fps]
                _paper_nk(ax_f, pts, "paper (GTX 1080)")
            ax_f.axhline(1.0, color="0.35", linestyle="--", linewidth=1, label=f"{baseline} (= 1)")
        ns = sorted(set(data["N"]))
        for ax in (ax_e, ax_f):
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.set_xlabel("number of components N (log scale)")
            ax.legend(
                fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False
            )
        ax_e.set(ylabel="top-1 error (%)", title="top-1 error (mean ± std over seeds)")
        source = "benchmark" if data.attrs["fps_source"] == "bench" else "training runs"
        ylabel = f"training speed relative to {baseline} (×)" if relative else "training images / s"
        ax_f.set(ylabel=ylabel, title=f"training speed ({source})")
        family = experiment.family or _one(grid, "variant")
        fig.suptitle(
            f"Figure 3: {family} with various N and K, {_backbones(grid)} ({_context(grid)})",
            fontweight="bold",
        )
        _absent_note(fig, data.attrs["absent"])
    return fig


# Training curves.

_CURVE_VALUES = ("val_top1_err", "train_loss")
#: per-batch routing of gated mixtures (gmsop.engine.loop): (mean column, worst column, axis label)
_ROUTING_CURVES = (
    ("distinct_topk_mean", "distinct_topk_min", "distinct Top-K sets per batch"),
    ("idle_components_mean", "idle_components_max", "idle components per batch"),
)


def curves_data(experiment: Experiment, epochs: pd.DataFrame) -> pd.DataFrame:
    """Per (row, epoch), rows in plan order: ``n`` (runs with that epoch), ``runs`` (the row's), and
    mean / std over seeds of each curve; ``attrs["absent"]``: rows without epochs (all: ValueError)."""
    values = _CURVE_VALUES + tuple(c for mean, worst, _ in _ROUTING_CURVES for c in (mean, worst))
    cols = ["label", "epoch", "n", "runs"] + [f"{v}_{s}" for v in values for s in ("mean", "std")]
    out, absent = [], []
    for row in experiment.rows:
        sel = row_runs(epochs, row, finished=False)
        if sel.empty:
            absent.append(row.label)
            continue
        n_runs = int(sel["path"].nunique())
        for ep, grp in sel.groupby("epoch", sort=True):
            rec = {"label": row.label, "epoch": int(ep), "n": len(grp), "runs": n_runs}
            for v in values:
                s = summarize(grp[v] if v in grp else ())
                rec[f"{v}_mean"], rec[f"{v}_std"] = s.mean, s.std
            out.append(rec)
    if not out:
        raise ValueError(f"training curves ({experiment.name}): no epochs for any of the rows {absent}")
    df = pd.DataFrame(out, columns=cols)
    df.attrs["absent"] = absent
    return df


def plot_training_curves(experiment: Experiment, epochs: pd.DataFrame, title: str | None = None) -> Figure:
    """Validation top-1 error and training loss per epoch, one line per row, band = ± 1 std; with
    gated mixtures also distinct Top-K sets and idle components per batch (dotted: worst batch)."""
    data = curves_data(experiment, epochs)
    order = list(dict.fromkeys(data["label"]))
    palette = sns.color_palette("colorblind" if len(order) <= 10 else "husl", len(order))
    routed = any(np.isfinite(data[f"{mean}_mean"].to_numpy(float)).any() for mean, _, _ in _ROUTING_CURVES)
    with _style():
        fig, axes = _figure(ncols=4 if routed else 2, width=5.6 if routed else 6.4)
        ax_v, ax_l = axes[:2]
        panels = [
            (ax_v, "val_top1_err", None, "validation top-1 error (%)", "validation top-1 error"),
            (ax_l, "train_loss", None, "training loss (cross-entropy + balance)", "training loss"),
            *(
                (ax, m, w, y, f"{y} (dotted: worst batch)")
                for ax, (m, w, y) in zip(axes[2:], _ROUTING_CURVES)
            ),
        ]
        for ax, col, worst, ylabel, heading in panels:
            for color, name in zip(palette, order):
                sub = data[data["label"] == name].sort_values("epoch")
                sub = sub[np.isfinite(sub[f"{col}_mean"].to_numpy(float))]  # epochs not evaluated
                x, mean = sub["epoch"].to_numpy(float), sub[f"{col}_mean"].to_numpy(float)
                if not len(x):
                    continue
                if worst:  # a routing curve: its mean and its worst batch, dotted
                    ax.plot(x, mean, color=color, label=name)
                    ax.plot(x, sub[f"{worst}_mean"].to_numpy(float), color=color, linestyle=":")
                    continue
                seeds = f"{name} (n={int(sub['runs'].iloc[0])})"
                ax.plot(x, mean, color=color, marker="o" if len(x) <= 4 else None, label=seeds)
                std = sub[f"{col}_std"].to_numpy(float)
                if np.isfinite(std).any():
                    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            ax.set(xlabel="epoch", ylabel=ylabel, title=heading)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_v.legend(title="row (seeds)", fontsize="small", title_fontsize="small")
        fig.suptitle(title or f"Training curves: {experiment.title}", fontweight="bold")
        _absent_note(fig, data.attrs["absent"])
    return fig


# What each component learned: class x component routing of the last evaluation.


def class_routing_data(experiment: Experiment, class_routing: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per gated-mixture row with records: (class x component) fraction of the class's validation
    images that select the component, pooled over seeds; no row with records: ValueError."""
    out: dict[str, pd.DataFrame] = {}
    for row in experiment.rows:
        if row.k is None:
            continue
        sel = row_runs(class_routing, row)
        if sel.empty:
            continue
        counts = sel.pivot_table(index="class", columns="component", values="count", aggfunc="sum")
        images = sel.groupby(["class", "path"])["class_images"].first().groupby("class").sum()
        out[row.label] = counts.div(images, axis=0)
    if not out:
        raise ValueError(f"class routing ({experiment.name}): no gated-mixture row has routing records")
    return out


def plot_class_routing(experiment: Experiment, class_routing: pd.DataFrame) -> Figure:
    """One heatmap per gated-mixture row of :func:`class_routing_data` (classes x components)."""
    data = class_routing_data(experiment, class_routing)
    ncols = min(3, len(data))
    nrows = math.ceil(len(data) / ncols)
    with _style():
        fig = Figure(figsize=(5.2 * ncols, 4.4 * nrows), layout="constrained")
        FigureCanvasAgg(fig)
        for i, (label, frac) in enumerate(data.items()):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            bar = dict(cbar=i % ncols == ncols - 1, cbar_kws={"label": "fraction of the class's images"})
            sns.heatmap(frac, ax=ax, vmin=0.0, vmax=1.0, cmap="viridis", **bar)
            ax.set(xlabel="component", ylabel="class", title=label)
        fig.suptitle(f"What each component learned: {experiment.title}", fontweight="bold")
    return fig


# Saving.


def render_figure(fig: Figure, fmt: str, dpi: int = 150) -> bytes:
    """``fig`` as the bytes of "svg", "png" or "pdf", reproducibly (fixed SVG ids, no dates)."""
    meta = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {"Software": None}}[fmt]
    buf = io.BytesIO()
    with _style():
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    return buf.getvalue()


def save_figure(fig: Figure, paths: Iterable[str | os.PathLike], dpi: int = 150) -> list[Path]:
    """Write ``fig`` to every path (format from the suffix), atomically, all rendered first."""
    paths = [Path(p) for p in paths]
    bad = [str(p) for p in paths if p.suffix.lower() not in FIGURE_FORMATS]
    if bad or not paths:
        raise ValueError(f"figure paths must end in one of {FIGURE_FORMATS}; got {bad or 'none'}")
    blobs = [render_figure(fig, p.suffix.lower()[1:], dpi) for p in paths]
    return [atomic_write(p, b) for p, b in zip(paths, blobs)]
