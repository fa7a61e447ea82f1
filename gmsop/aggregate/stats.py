"""Mean, spread and count over seeds: the one place that decides how runs are summarised.

``std`` is the sample standard deviation (ddof = 1), NaN with one run (a single seed never looks
perfectly reproducible). A non-finite value (a diverged run) is not skipped: mean and std become
NaN and ``n_nonfinite`` counts it, where pandas' ``skipna`` would hide the failed seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


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
