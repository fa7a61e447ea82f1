"""Mean, spread and count over seeds: the one place that decides how runs are summarised.

Conventions (used by every table and figure, so they agree):

* ``std`` is the sample standard deviation (ddof = 1) over seeds; with one run it is NaN, not 0,
  so a single seed never looks perfectly reproducible.
* A non-finite value (a diverged run wrote NaN) is NOT skipped: the mean and std become NaN and
  ``n_nonfinite`` counts it. pandas' default ``skipna`` would silently drop the failed seed and
  report the survivors as if they were all.
* ``n`` counts the values given, i.e. the finished runs the caller selected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Summary", "summarize", "summarize_groups"]


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    n: int
    n_nonfinite: int


def summarize(values: Iterable[float]) -> Summary:
    """Mean and sample std (ddof=1) of ``values``; NaN mean/std if empty or any value is non-finite."""
    arr = np.asarray(list(values), dtype=float)
    n = int(arr.size)
    bad = int((~np.isfinite(arr)).sum())
    if n == 0 or bad:
        return Summary(float("nan"), float("nan"), n, bad)
    std = float(arr.std(ddof=1)) if n > 1 else float("nan")
    return Summary(float(arr.mean()), std, n, 0)


def summarize_groups(df: pd.DataFrame, by: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by``: ``n``, ``seeds`` and ``<value>_mean`` / ``<value>_std`` for each value.

    ``n_nonfinite`` counts runs with any non-finite value among ``values``. Groups are sorted.
    """
    by, values = list(by), list(values)
    cols = by + ["n", "n_nonfinite", "seeds"] + [f"{v}_{s}" for v in values for s in ("mean", "std")]
    if df.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for key, grp in df.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        sums = {v: summarize(grp[v]) for v in values}
        row["n"] = len(grp)
        row["n_nonfinite"] = int((~np.isfinite(grp[values].to_numpy(dtype=float))).any(axis=1).sum())
        row["seeds"] = ";".join(str(s) for s in sorted(grp["seed"])) if "seed" in grp else ""
        for v, s in sums.items():
            row[f"{v}_mean"], row[f"{v}_std"] = s.mean, s.std
        out.append(row)
    return pd.DataFrame(out, columns=cols)
