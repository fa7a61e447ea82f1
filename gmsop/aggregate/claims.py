"""The paper's claims (``"A < B"``: lower top-1 error on the left) tested on our runs.

Two rows' runs are independent samples (seeds change initialisation and data order). A claim
reports ``diff`` = mean(A) - mean(B) (negative favours it), its 95% Welch t-interval, with three or
more seeds a side a percentile bootstrap interval and rliable's probability of improvement. A seed
*failed* when its error is non-finite or above :data:`CHANCE_FRACTION` of chance. Verdicts, in the
order decided: missing, not learned (every seed of a row failed), unstable (some did), inconclusive
(1 seed / no spread), then holds / reversed when the interval excludes zero, else inconclusive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

from gmsop.claim_spec import Claim, parse_claim

#: A row has learned when its error is at most this fraction of chance error: it closed at least a
#: quarter of the gap between guessing and a perfect score, more than luck near chance gives.
CHANCE_FRACTION = 0.75

#: Confidence level of every interval, and 1 - the family-wise error of the Holm adjustment.
LEVEL = 0.95

#: The verdicts of a claim tested with an interval: the family the Holm adjustment counts.
TESTED = ("holds", "reversed", "inconclusive")

#: Every kind of verdict, strongest first; ``unstable`` is given as ``unstable (k of n seeds failed)``.
VERDICTS = (
    *TESTED,
    "inconclusive (no spread)",
    "inconclusive (1 seed)",
    "unstable",
    "not learned",
    "missing",
)

_UNSTABLE = re.compile(r"unstable \((\d+) of (\d+) seeds failed\)")
_NAN = float("nan")


def chance_error(classes: int) -> float:
    """Top-1 error (percent) of guessing uniformly among ``classes`` classes."""
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 2:
        raise ValueError(f"classes must be an integer >= 2, got {classes!r}")
    return 100.0 * (1.0 - 1.0 / int(classes))


def learned(error: float, classes: int) -> bool:
    """Whether a top-1 error (percent) is finite and at most :data:`CHANCE_FRACTION` of chance."""
    threshold = CHANCE_FRACTION * chance_error(classes)
    return bool(math.isfinite(error) and error <= threshold)


def failed_seeds(errors: Sequence[float], classes: int | None) -> np.ndarray:
    """A boolean per run: non-finite, or (``classes`` known) not :func:`learned`."""
    x = np.asarray(list(errors), dtype=float).ravel()
    if classes is None:
        return ~np.isfinite(x)
    return np.array([not learned(float(e), classes) for e in x], dtype=bool)


def verdict_kind(verdict: str) -> str:
    """The entry of :data:`VERDICTS` a verdict is of ("unstable (1 of 6 seeds failed)" -> "unstable")."""
    if verdict in VERDICTS:
        return verdict
    if _UNSTABLE.fullmatch(verdict):
        return "unstable"
    raise ValueError(f"{verdict!r} is not a verdict; verdicts are {', '.join(VERDICTS)}")


@dataclass(frozen=True)
class ClaimResult:
    """One claim tested on our runs; NaN wherever no test is reported."""

    claim: str
    better: str
    worse: str
    better_mean: float
    worse_mean: float
    diff: float
    ci_low: float
    ci_high: float
    boot_low: float
    boot_high: float
    n_better: int
    n_worse: int
    p_improvement: float
    p_value: float
    se: float
    dof: float
    n_failed: int
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


#: Column order of :func:`evaluate_claims`' frame: the fields of :class:`ClaimResult`.
CLAIM_COLUMNS = tuple(f.name for f in fields(ClaimResult))


def _mean(x: np.ndarray) -> float:
    """Mean of the runs; NaN when there are none or one diverged (as :mod:`gmsop.aggregate.stats`)."""
    return float(x.mean()) if x.size and np.isfinite(x).all() else _NAN


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(standard error, degrees of freedom, two-sided p-value) of Welch's test of mean(a) = mean(b);
    needs two runs a side and some spread on at least one side."""
    va, vb = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    t = float(a.mean() - b.mean()) / se
    return se, dof, float(2.0 * stats.t.sf(abs(t), dof))


def _t_interval(diff: float, se: float, dof: float, level: float) -> tuple[float, float]:
    """``diff`` ± the two-sided ``level`` quantile of Student's t with ``dof`` degrees times ``se``."""
    half = float(stats.t.ppf(1.0 - (1.0 - level) / 2.0, dof)) * se
    return diff - half, diff + half


def _bootstrap_interval(
    a: np.ndarray, b: np.ndarray, level: float, n_boot: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), resampling each side on its own."""
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    mb = b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(ma - mb, [tail, 100.0 - tail])
    return float(low), float(high)


def evaluate_claim(
    claim: Claim,
    better_errors: Sequence[float],
    worse_errors: Sequence[float],
    better_classes: int | None,
    worse_classes: int | None,
    *,
    level: float = LEVEL,
    n_boot: int = 10000,
    seed: int = 0,
) -> ClaimResult:
    """Test ``claim`` on the top-1 errors (percent) of each row's finished runs; ``*_classes`` is
    the row's number of classes (None: only non-finite errors fail). The bootstrap is seeded."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    a = np.asarray(list(better_errors), dtype=float).ravel()
    b = np.asarray(list(worse_errors), dtype=float).ravel()
    ma, mb = _mean(a), _mean(b)
    untested = ("ci_low", "ci_high", "boot_low", "boot_high", "p_improvement", "p_value", "se", "dof")
    out = dict(claim=str(claim), better=claim.better, worse=claim.worse, better_mean=ma, worse_mean=mb)
    out.update(diff=ma - mb, **dict.fromkeys(untested, _NAN), n_better=int(a.size), n_worse=int(b.size))
    out["n_failed"] = 0
    if a.size == 0 or b.size == 0:
        return ClaimResult(**out, verdict="missing")
    fa, fb = failed_seeds(a, better_classes), failed_seeds(b, worse_classes)
    out["n_failed"] = int(fa.sum() + fb.sum())
    if fa.all() or fb.all():
        return ClaimResult(**out, verdict="not learned")
    if out["n_failed"]:
        return ClaimResult(**out, verdict=f"unstable ({out['n_failed']} of {a.size + b.size} seeds failed)")
    if a.size == 1 or b.size == 1:
        return ClaimResult(**out, verdict="inconclusive (1 seed)")
    if np.ptp(a) == 0.0 and np.ptp(b) == 0.0:
        return ClaimResult(**out, verdict="inconclusive (no spread)")
    se, dof, p = _welch(a, b)
    low, high = _t_interval(ma - mb, se, dof, level)
    out.update(ci_low=low, ci_high=high, p_value=p, se=se, dof=dof)
    if a.size >= 3 and b.size >= 3:
        out["boot_low"], out["boot_high"] = _bootstrap_interval(a, b, level, n_boot, seed)
        # P(a run of a has lower error than a run of b) over all pairs, ties counting one half
        pairs = np.less.outer(a, b).sum() + 0.5 * np.equal.outer(a, b).sum()
        out["p_improvement"] = float(pairs / (a.size * b.size))
    verdict = "holds" if high < 0 else "reversed" if low > 0 else "inconclusive"
    return ClaimResult(**out, verdict=verdict)


def evaluate_claims(
    claims: Iterable[Claim | str], errors: Mapping[str, Sequence[float]], classes: Mapping[str, int | None]
) -> pd.DataFrame:
    """One row per claim, columns :data:`CLAIM_COLUMNS`; ``errors`` and ``classes`` map a row label to
    its finished runs' top-1 errors (absent: "missing") and its classes (absent: no chance check)."""
    rows = []
    for c in claims:
        c = parse_claim(c) if isinstance(c, str) else c
        pair = (c.better, c.worse)
        rows.append(evaluate_claim(c, *(errors.get(x, ()) for x in pair), *map(classes.get, pair)).to_dict())
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


#: Columns :func:`adjust_holm` adds to a frame of claims.
HOLM_COLUMNS = ("p_holm", "holm_low", "holm_high", "verdict_holm")


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's adjusted p-values, in the order given: the i-th smallest p times (m - i + 1), made
    non-decreasing in that order and capped at 1 (m = number of p-values)."""
    p = np.asarray(list(p_values), dtype=float).ravel()
    if not np.isfinite(p).all() or ((p < 0) | (p > 1)).any():
        raise ValueError(f"p-values must be finite numbers in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = stepped
    return out


def adjust_holm(claims: pd.DataFrame) -> pd.DataFrame:
    """``claims`` with :data:`HOLM_COLUMNS` from Holm's step-down procedure over the claims with a
    verdict in :data:`TESTED`, at family-wise error ``1 - LEVEL``: the adjusted p-value, its verdict,
    and the Welch interval at the level Holm tests the claim at (it excludes 0 exactly when the
    adjusted verdict is a direction). Claims outside the family keep their verdict and NaN."""
    alpha = 1.0 - LEVEL
    out = claims.copy()
    out["p_holm"], out["holm_low"], out["holm_high"] = _NAN, _NAN, _NAN
    out["verdict_holm"] = out["verdict"]
    family = [i for i, v in zip(out.index, out["verdict"]) if v in TESTED]
    if not family:
        return out
    p = out.loc[family, "p_value"].to_numpy(float)
    out.loc[family, "p_holm"] = holm(p)
    m = len(family)
    stopped: float | None = None  # the level of the first claim Holm does not reject
    for step, pos in enumerate(np.argsort(p, kind="stable")):
        at = alpha / (m - step)
        if stopped is None and p[pos] >= at:
            stopped = at
        i = family[pos]
        diff = float(out.loc[i, "diff"])
        se, dof = float(out.loc[i, "se"]), float(out.loc[i, "dof"])
        low, high = _t_interval(diff, se, dof, 1.0 - (stopped or at))
        out.loc[i, ["holm_low", "holm_high"]] = low, high
        rejected = out.loc[i, "p_holm"] < alpha
        out.loc[i, "verdict_holm"] = ("holds" if diff < 0 else "reversed") if rejected else "inconclusive"
    return out


def finite(x) -> bool:
    """Whether ``x`` is a finite number (None, NA, NaN, inf and non-numbers are not)."""
    try:
        return x is not None and not pd.isna(x) and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _finite(values: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if finite(v)}


def kendall_agreement(paper: Mapping[str, float], ours: Mapping[str, float]) -> tuple[float, int]:
    """``(tau, n)``: Kendall's tau-b over the ``n`` labels both have finite (NaN when n < 2)."""
    p, o = _finite(paper), _finite(ours)
    common = [k for k in p if k in o]
    if len(common) < 2:
        return _NAN, len(common)
    tau = stats.kendalltau([p[k] for k in common], [o[k] for k in common], variant="b").statistic
    return float(tau), len(common)


def ranks(values: Mapping[str, float]) -> dict[str, int]:
    """Rank 1 = lowest finite value; ties share the lowest rank ("min"); non-finite values are absent."""
    v = _finite(values)
    if not v:
        return {}
    r = stats.rankdata(list(v.values()), method="min")
    return {k: int(x) for k, x in zip(v, r)}
