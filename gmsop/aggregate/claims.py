"""The paper's qualitative claims ("A has lower error than B"), tested on our runs.

A reproduction at a smaller scale rarely matches the published numbers, but it should show the
same *orderings*: SR-SOP below GAP, the gated mixture below one component, and so on. A table
spec may list such claims as ``"A < B"`` (row labels, lower top-1 error on the left). Each claim
is tested on the finished runs of its two rows; seeds change initialisation and data order, not
the data, so the runs of two rows are independent samples, not pairs.

What is reported for a claim (see :class:`ClaimResult`):

* ``diff`` = mean(A) - mean(B) in top-1 error points; negative favours the claim.
* ``ci_low`` / ``ci_high``: the 95% Welch t-interval of that difference. Welch, not Student,
  because the two rows need not have the same spread over seeds (a wider model or a different
  pooling can be more or less stable), and Student's pooled variance would then be wrong.
* ``boot_low`` / ``boot_high``: a 95% percentile bootstrap interval of the same difference, a
  check that does not lean on normality. With fewer than three runs a side, resampling can only
  reproduce the few values there are, so it is NaN.
* ``p_improvement``: rliable's probability of improvement, P(a run of A has lower error than a
  run of B) over all pairs of seeds, ties counting one half (the Mann-Whitney U statistic divided
  by the number of pairs). It says how often A wins, not by how much; NaN with fewer than three
  seeds a side, where it can only take a handful of values.

The verdict, decided in this order:

* ``missing``: a row has no finished run, so there is nothing to compare.
* ``not learned``: a run diverged (non-finite error), or a row's mean error is above
  :data:`CHANCE_FRACTION` of chance error. Which of two untrained models is "better" says
  nothing about the method the paper describes, so such a pair supports no verdict and no test
  is reported (the means and ``diff`` are still shown when finite, to see how far off it is).
* ``inconclusive (1 seed)``: a row has a single run. One run has no spread to compare the
  difference with, so no interval exists; ``diff`` is shown but is not a direction.
* ``holds`` / ``reversed``: the Welch interval lies entirely below / above zero. Only an
  interval that excludes zero says which row is better; a two-sided 95% interval below zero is
  a one-sided Welch test of "A < B" at the 2.5% level.
* ``inconclusive``: the interval touches or contains zero. The difference is within the noise
  of the seeds, and its sign is then not evidence either way, so it is never reported as a
  direction (no "holds, within noise").

The verdict is a statement about our runs, not an endorsement: with three seeds a t-test has
little power, so "inconclusive" is the honest answer for small differences.

:func:`kendall_agreement` and :func:`ranks` compare whole columns instead of chosen pairs: does
our ranking of the rows agree with the paper's, whatever the absolute numbers?
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas and scipy load on first use: planning parses claims, it tests none
    import pandas as pd

__all__ = [
    "Claim", "ClaimResult", "CLAIM_COLUMNS", "CHANCE_FRACTION", "VERDICTS", "parse_claim", "parse_claims",
    "chance_error", "learned", "evaluate_claim", "evaluate_claims", "kendall_agreement", "ranks",
]

#: A row counts as learned when its mean error is at most this fraction of chance error, i.e. it
#: has closed at least a quarter of the gap between guessing and a perfect score. A model stuck
#: near chance wanders a little below it by luck; this cut asks for more than luck.
CHANCE_FRACTION = 0.75

#: Every verdict :func:`evaluate_claim` can give, strongest first.
VERDICTS = ("holds", "reversed", "inconclusive", "inconclusive (1 seed)", "not learned", "missing")

_SPLIT = re.compile(r"\s+<\s+")
_NAN = float("nan")


@dataclass(frozen=True)
class Claim:
    """``better`` (a row label) has lower top-1 error than ``worse``."""

    better: str
    worse: str

    def __str__(self) -> str:
        return f"{self.better} < {self.worse}"


def parse_claim(text: str, labels: Sequence[str] | None = None, where: str = "orderings") -> Claim:
    """Parse ``"A < B"`` (spaces around ``<`` required: labels may contain other symbols).

    With ``labels``, both sides must be row labels of the table; the error lists them.
    """
    if not isinstance(text, str):
        raise ValueError(f"{where}: {text!r} is not a string like 'SR-SOP < ResNet-18'")
    parts = _SPLIT.split(text.strip())
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{where}: {text!r} is not of the form 'A < B' (row labels, lower error on the left)")
    claim = Claim(parts[0].strip(), parts[1].strip())
    if claim.better == claim.worse:
        raise ValueError(f"{where}: {text!r} compares a row with itself")
    if labels is not None:
        unknown = [s for s in (claim.better, claim.worse) if s not in labels]
        if unknown:
            raise ValueError(f"{where}: {text!r} names {unknown}, not a row of the table; rows are {list(labels)}")
    return claim


def parse_claims(items: Iterable[str] | None, labels: Sequence[str] | None = None,
                 where: str = "orderings") -> tuple[Claim, ...]:
    """Parse a list of ``"A < B"`` strings (see :func:`parse_claim`); errors name ``where[i]``."""
    if items is None:
        return ()
    if isinstance(items, str):
        raise ValueError(f"{where}: expected a list of 'A < B' strings, got the string {items!r}")
    return tuple(parse_claim(t, labels, f"{where}[{i}]") for i, t in enumerate(items))


def chance_error(classes: int) -> float:
    """Top-1 error (percent) of guessing uniformly among ``classes`` classes."""
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 2:
        raise ValueError(f"classes must be an integer >= 2, got {classes!r}")
    return 100.0 * (1.0 - 1.0 / int(classes))


def learned(mean_error: float, classes: int) -> bool:
    """Whether a mean top-1 error (percent) is at most :data:`CHANCE_FRACTION` of chance error.

    A non-finite mean (a diverged run) has not learned: it is False, never an error.
    """
    threshold = CHANCE_FRACTION * chance_error(classes)
    return bool(math.isfinite(mean_error) and mean_error <= threshold)


@dataclass(frozen=True)
class ClaimResult:
    """One claim tested on our runs; NaN wherever no test is reported (see the module docstring)."""

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
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


#: Column order of :func:`evaluate_claims`' frame: the fields of :class:`ClaimResult`.
CLAIM_COLUMNS = tuple(f.name for f in fields(ClaimResult))


def _mean(x: np.ndarray) -> float:
    """Mean of the runs; NaN when there are none or one diverged (as in :mod:`gmsop.aggregate.stats`)."""
    return float(x.mean()) if x.size and np.isfinite(x).all() else _NAN


def _welch_interval(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float]:
    """Welch t-interval of mean(a) - mean(b); needs two runs a side. No spread at all: a point."""
    diff = float(a.mean() - b.mean())
    va, vb = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    from scipy import stats

    half = float(stats.t.ppf(1.0 - (1.0 - level) / 2.0, df)) * se
    return diff - half, diff + half


def _bootstrap_interval(a: np.ndarray, b: np.ndarray, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), resampling each side on its own."""
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    mb = b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(ma - mb, [tail, 100.0 - tail])
    return float(low), float(high)


def _p_improvement(a: np.ndarray, b: np.ndarray) -> float:
    """P(a run of ``a`` has lower error than a run of ``b``) over all pairs, ties counting one half."""
    return float((np.less.outer(a, b).sum() + 0.5 * np.equal.outer(a, b).sum()) / (a.size * b.size))


def _not_learned(x: np.ndarray, classes: int | None) -> bool:
    if not np.isfinite(x).all():
        return True
    return classes is not None and not learned(float(x.mean()), classes)


def evaluate_claim(claim: Claim, better_errors: Sequence[float], worse_errors: Sequence[float],
                   better_classes: int | None, worse_classes: int | None, *,
                   level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> ClaimResult:
    """Test ``claim`` on the top-1 errors (percent) of each row's finished runs.

    ``*_classes`` is the number of classes of the row's dataset, for the "not learned" check;
    None skips that check (a non-finite error is still "not learned"). The bootstrap draws from
    ``numpy.random.default_rng(seed)``, so the same inputs always give the same interval.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    a = np.asarray(list(better_errors), dtype=float).ravel()
    b = np.asarray(list(worse_errors), dtype=float).ravel()
    ma, mb = _mean(a), _mean(b)
    out = dict(claim=str(claim), better=claim.better, worse=claim.worse, better_mean=ma, worse_mean=mb,
               diff=ma - mb, ci_low=_NAN, ci_high=_NAN, boot_low=_NAN, boot_high=_NAN,
               n_better=int(a.size), n_worse=int(b.size), p_improvement=_NAN)
    if a.size == 0 or b.size == 0:
        return ClaimResult(**out, verdict="missing")
    if _not_learned(a, better_classes) or _not_learned(b, worse_classes):
        return ClaimResult(**out, verdict="not learned")
    if a.size == 1 or b.size == 1:
        return ClaimResult(**out, verdict="inconclusive (1 seed)")
    low, high = _welch_interval(a, b, level)
    out.update(ci_low=low, ci_high=high)
    if a.size >= 3 and b.size >= 3:
        boot_low, boot_high = _bootstrap_interval(a, b, level, n_boot, seed)
        out.update(boot_low=boot_low, boot_high=boot_high, p_improvement=_p_improvement(a, b))
    verdict = "holds" if high < 0 else "reversed" if low > 0 else "inconclusive"
    return ClaimResult(**out, verdict=verdict)


def evaluate_claims(claims: Iterable[Claim | str], errors: Mapping[str, Sequence[float]],
                    classes: Mapping[str, int | None], *,
                    level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """One row per claim, in order, with columns :data:`CLAIM_COLUMNS`.

    ``errors``: row label -> top-1 errors of its finished runs (a label absent is "missing");
    ``classes``: row label -> number of classes (absent or None skips the chance check).
    """
    rows = []
    for c in claims:
        c = parse_claim(c) if isinstance(c, str) else c
        r = evaluate_claim(c, errors.get(c.better, ()), errors.get(c.worse, ()),
                           classes.get(c.better), classes.get(c.worse), level=level, n_boot=n_boot, seed=seed)
        rows.append(r.to_dict())
    import pandas as pd

    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def _finite(values: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[k] = f
    return out


def kendall_agreement(paper: Mapping[str, float], ours: Mapping[str, float]) -> tuple[float, int]:
    """Kendall's tau-b between the paper's and our values over the labels both have finite.

    Returns ``(tau, n)``; tau is NaN when n < 2 (or when one side is all ties, as scipy gives).
    """
    p, o = _finite(paper), _finite(ours)
    common = [k for k in p if k in o]
    if len(common) < 2:
        return _NAN, len(common)
    from scipy import stats

    tau = stats.kendalltau([p[k] for k in common], [o[k] for k in common], variant="b").statistic
    return float(tau), len(common)


def ranks(values: Mapping[str, float]) -> dict[str, int]:
    """Rank 1 = lowest finite value; ties share the lowest rank ("min"); non-finite values are absent."""
    v = _finite(values)
    if not v:
        return {}
    from scipy import stats

    r = stats.rankdata(list(v.values()), method="min")
    return {k: int(x) for k, x in zip(v, r)}
