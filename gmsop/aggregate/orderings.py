"""The paper's qualitative claims ("A has lower error than B"), checked on our runs.

A reproduction at a smaller scale rarely matches the published numbers, but it should show the
same *orderings*: SR-SOP below GAP, the gated mixture below one component, and so on. A table
spec may list such claims as ``"A < B"`` (row labels, lower top-1 error on the left); each one is
checked on the finished runs of the two rows:

* ``diff`` = mean(A) - mean(B) in top-1 error points (negative: the claim holds on average);
* ``p_value``: one-sided Welch t-test of "A's error is lower than B's" over the seeds (needs at
  least two finished runs per row; NaN otherwise). Seeds change initialisation and data order,
  not the data, so the runs of two rows are independent samples, not pairs;
* ``verdict``: ``holds`` (diff < 0 and p < :data:`ALPHA`), ``holds, within noise`` (diff < 0
  but p >= ALPHA or too few seeds to test), ``reversed`` (diff >= 0), ``missing`` (a row has no
  finished run) or ``not finite`` (a run diverged).

The verdict is a statement about our runs, not an endorsement: with three seeds a t-test has
little power, so "within noise" is the honest answer for small differences.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Ordering", "parse_ordering", "parse_orderings", "check_orderings", "ORDERING_COLUMNS", "ALPHA"]

#: Significance level of the one-sided test behind the ``holds`` verdict.
ALPHA = 0.05

ORDERING_COLUMNS = (
    "claim", "better", "worse", "better_mean", "worse_mean", "diff", "n_better", "n_worse", "p_value", "verdict",
)

_SPLIT = re.compile(r"\s+<\s+")


@dataclass(frozen=True)
class Ordering:
    """``better`` (a row label) has lower top-1 error than ``worse``."""

    better: str
    worse: str

    def __str__(self) -> str:
        return f"{self.better} < {self.worse}"


def parse_ordering(text: str, labels: Sequence[str] | None = None, where: str = "orderings") -> Ordering:
    """Parse ``"A < B"`` (spaces around ``<`` required: labels may contain other symbols).

    With ``labels``, both sides must be row labels of the table; the error lists them.
    """
    if not isinstance(text, str):
        raise ValueError(f"{where}: {text!r} is not a string like 'SR-SOP < ResNet-18'")
    parts = _SPLIT.split(text.strip())
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{where}: {text!r} is not of the form 'A < B' (row labels, lower error on the left)")
    ordering = Ordering(parts[0].strip(), parts[1].strip())
    if ordering.better == ordering.worse:
        raise ValueError(f"{where}: {text!r} compares a row with itself")
    if labels is not None:
        unknown = [s for s in (ordering.better, ordering.worse) if s not in labels]
        if unknown:
            raise ValueError(f"{where}: {text!r} names {unknown}, not a row of the table; rows are {list(labels)}")
    return ordering


def parse_orderings(items: Iterable[str] | None, labels: Sequence[str] | None = None,
                    where: str = "orderings") -> tuple[Ordering, ...]:
    """Parse a list of ``"A < B"`` strings (see :func:`parse_ordering`)."""
    if items is None:
        return ()
    if isinstance(items, str):
        raise ValueError(f"{where}: expected a list of 'A < B' strings, got the string {items!r}")
    return tuple(parse_ordering(t, labels, f"{where}[{i}]") for i, t in enumerate(items))


def _welch_less(a: np.ndarray, b: np.ndarray) -> float:
    """One-sided p-value of mean(a) < mean(b) (Welch); NaN when it cannot be tested."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.var(a, ddof=1) == 0 and np.var(b, ddof=1) == 0:  # no spread: the test is undefined
        return 0.0 if a.mean() < b.mean() else 1.0
    from scipy import stats

    return float(stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue)


def _verdict(a: np.ndarray, b: np.ndarray, diff: float, p: float) -> str:
    if len(a) == 0 or len(b) == 0:
        return "missing"
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return "not finite"
    if diff >= 0:
        return "reversed"
    return "holds" if (not math.isnan(p) and p < ALPHA) else "holds, within noise"


def check_orderings(errors: dict[str, Sequence[float]], orderings: Iterable[Ordering]) -> pd.DataFrame:
    """Check each ordering against ``errors``: row label -> top-1 errors of its finished runs."""
    out = []
    for o in orderings:
        a = np.asarray(errors.get(o.better, ()), dtype=float)
        b = np.asarray(errors.get(o.worse, ()), dtype=float)
        finite = len(a) and len(b) and np.isfinite(a).all() and np.isfinite(b).all()
        ma = float(a.mean()) if finite else float("nan")
        mb = float(b.mean()) if finite else float("nan")
        diff = ma - mb
        p = _welch_less(a, b) if finite else float("nan")
        out.append({
            "claim": str(o), "better": o.better, "worse": o.worse, "better_mean": ma, "worse_mean": mb,
            "diff": diff, "n_better": len(a), "n_worse": len(b), "p_value": p,
            "verdict": _verdict(a, b, diff, p),
        })
    return pd.DataFrame(out, columns=list(ORDERING_COLUMNS))
