"""The scorecard as a forest plot: each claim's difference with its 95% and Holm intervals.

One line per claim in the scorecard's order: a dot at the difference (left of 0 favours the
claim), the 95% Welch interval thick and the Holm-adjusted one thin, coloured by the Holm verdict;
an untested claim is a hollow marker. :func:`forest_data` returns exactly what is drawn.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from gmsop.aggregate.claims import TESTED, verdict_kind
from gmsop.aggregate.display import verdict_colour
from gmsop.aggregate.figures import _figure, _style

#: Columns of :func:`forest_data`: one row per claim, ``y`` = its line (0 at the top).
FOREST_COLUMNS = tuple("y label diff ci_low ci_high holm_low holm_high verdict_holm tested colour".split())


_NUMBERS = FOREST_COLUMNS[2:7]  # the difference and its intervals


def forest_data(card: pd.DataFrame) -> pd.DataFrame:
    """What :func:`plot_forest` draws for a scorecard (:func:`scorecard.build_scorecard`)."""
    rows = [
        {
            "y": y,
            "label": f"{r['claim']}  ({r['experiment']})",
            **{c: float(r[c]) for c in _NUMBERS},
            "verdict_holm": r["verdict_holm"],
            "tested": r["verdict"] in TESTED,
            "colour": verdict_colour(r["verdict_holm"]),
        }
        for y, (_, r) in enumerate(card.iterrows())
    ]
    return pd.DataFrame(rows, columns=list(FOREST_COLUMNS))


def plot_forest(card: pd.DataFrame) -> Figure:
    """The forest plot of a scorecard; an empty scorecard gives a figure that says so."""
    data = forest_data(card)
    n = len(data)
    with _style():
        fig, (ax,) = _figure(1, width=9.0, height=1.4 + 0.32 * max(n, 1))
        if not n:
            ax.text(0.5, 0.5, "no claim to show", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return fig
        ax.axvline(0.0, color="0.3", linewidth=0.8, zorder=1)
        t = data[data["tested"]]
        holm = dict(linewidth=1.2, zorder=2, gid="holm", label="Holm-adjusted interval")
        ax.hlines(t["y"], t["holm_low"], t["holm_high"], colors=t["colour"], **holm)
        ci = dict(linewidth=4.0, alpha=0.8, zorder=3, gid="ci95", label="95% interval")
        ax.hlines(t["y"], t["ci_low"], t["ci_high"], colors=t["colour"], **ci)
        ax.scatter(t["diff"], t["y"], c=t["colour"], s=28, zorder=4, gid="diff", label="difference")
        u = data[~data["tested"] & np.isfinite(data["diff"])]
        untested = dict(s=28, zorder=4, gid="untested", label="difference, no test")
        ax.scatter(u["diff"], u["y"], facecolors="none", edgecolors=u["colour"], **untested)
        right = blended_transform_factory(ax.transAxes, ax.transData)
        for _, r in data.iterrows():
            bold = verdict_kind(r["verdict_holm"]) in ("holds", "reversed")
            at = dict(transform=right, va="center", ha="left", fontsize="small", color=r["colour"])
            ax.text(1.01, r["y"], r["verdict_holm"], **at, fontweight="bold" if bold else "normal")
        ax.set_yticks(data["y"], data["label"], fontsize="small")
        ax.set_ylim(n - 0.5, -0.5)
        ax.grid(axis="y", visible=False)
        span = max([abs(x) for c in _NUMBERS for x in data[c] if math.isfinite(x)] + [1.0])
        ax.set_xlim(-1.08 * span, 1.08 * span)
        ax.set_xlabel("difference of mean top-1 error, left row − right row (points; < 0 favours the claim)")
        ax.set_title("Each claim: difference, 95% interval (thick), Holm-adjusted (thin)", fontsize="medium")
    return fig
