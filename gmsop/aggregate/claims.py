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

* ``p_value``: the two-sided Welch t-test's p-value of "no difference", the input of the Holm
  adjustment (:func:`adjust_holm`); ``se`` and ``dof`` are the Welch standard error and degrees
  of freedom, from which an interval at any level follows.

A seed *failed* when its error is non-finite (the run diverged) or above :data:`CHANCE_FRACTION`
of chance error (:func:`failed_seeds`): it did not learn, while other seeds of the same row
may have. A failed seed is an event to report, not a large variance to average over.

The verdict, decided in this order:

* ``missing``: a row has no finished run, so there is nothing to compare.
* ``not learned``: every seed of a row failed. Which of two untrained models is "better" says
  nothing about the method the paper describes, so such a pair supports no verdict and no test
  is reported (the means and ``diff`` are still shown when finite, to see how far off it is).
* ``unstable (k of n seeds failed)``: some, not all, seeds of a row failed (k counts the failed
  seeds of both rows, n all their seeds). The failure is the finding; no interval is reported.
* ``inconclusive (1 seed)``: a row has a single run. One run has no spread to compare the
  difference with, so no interval exists; ``diff`` is shown but is not a direction.
* ``inconclusive (no spread)``: every seed of each row gave the same error (both variances are
  zero). The Welch interval would collapse to a point and claim certainty that no test gives.
* ``holds`` / ``reversed``: the Welch interval lies entirely below / above zero. Only an
  interval that excludes zero says which row is better; a two-sided 95% interval below zero is
  a one-sided Welch test of "A < B" at the 2.5% level.
* ``inconclusive``: the interval touches or contains zero. The difference is within the noise
  of the seeds, and its sign is then not evidence either way, so it is never reported as a
  direction (no "holds, within noise").

The verdict is a statement about our runs, not an endorsement: with three seeds a t-test has
little power, so "inconclusive" is the honest answer for small differences. Each verdict is a
test at its own level; :func:`adjust_holm` adds the verdicts of Holm's step-down procedure over
a family of claims, which keeps the chance of any false "holds"/"reversed" in the family at 5%.

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
    "Claim",
    "ClaimResult",
    "CLAIM_COLUMNS",
    "CHANCE_FRACTION",
    "LEVEL",
    "VERDICTS",
    "TESTED",
    "parse_claim",
    "parse_claims",
    "chance_error",
    "learned",
    "failed_seeds",
    "verdict_kind",
    "evaluate_claim",
    "evaluate_claims",
    "holm",
    "adjust_holm",
    "HOLM_COLUMNS",
    "kendall_agreement",
    "ranks",
]

#: A row counts as learned when its mean error is at most this fraction of chance error, i.e. it
#: has closed at least a quarter of the gap between guessing and a perfect score. A model stuck
#: near chance wanders a little below it by luck; this cut asks for more than luck.
CHANCE_FRACTION = 0.75

#: Confidence level of every interval, and 1 - the family-wise error of the Holm adjustment.
LEVEL = 0.95

#: Every kind of verdict :func:`evaluate_claim` can give, strongest first. ``unstable`` is given
#: as ``unstable (k of n seeds failed)``; :func:`verdict_kind` maps a verdict to its kind.
VERDICTS = (
    "holds",
    "reversed",
    "inconclusive",
    "inconclusive (no spread)",
    "inconclusive (1 seed)",
    "unstable",
    "not learned",
    "missing",
)

#: The verdicts of a claim tested with an interval: the family the Holm adjustment counts.
TESTED = ("holds", "reversed", "inconclusive")

_SPLIT = re.compile(r"\s+<\s+")
_UNSTABLE = re.compile(r"unstable \((\d+) of (\d+) seeds failed\)")
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
        raise ValueError(
            f"{where}: {text!r} is not of the form 'A < B' (row labels, lower error on the left)"
        )
    claim = Claim(parts[0].strip(), parts[1].strip())
    if claim.better == claim.worse:
        raise ValueError(f"{where}: {text!r} compares a row with itself")
    if labels is not None:
        unknown = [s for s in (claim.better, claim.worse) if s not in labels]
        if unknown:
            raise ValueError(
                f"{where}: {text!r} names {unknown}, not a row of the table; rows are {list(labels)}"
            )
    return claim


def parse_claims(
    items: Iterable[str] | None, labels: Sequence[str] | None = None, where: str = "orderings"
) -> tuple[Claim, ...]:
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


def learned(error: float, classes: int) -> bool:
    """Whether a top-1 error (percent) is at most :data:`CHANCE_FRACTION` of chance error.

    A non-finite error (a diverged run) has not learned: it is False, never an error.
    """
    threshold = CHANCE_FRACTION * chance_error(classes)
    return bool(math.isfinite(error) and error <= threshold)


def failed_seeds(errors: Sequence[float], classes: int | None) -> np.ndarray:
    """Which runs failed (a boolean per run): a non-finite error, or one above
    :data:`CHANCE_FRACTION` of chance when ``classes`` is known (None: only non-finite ones)."""
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
    """Mean of the runs; NaN when there are none or one diverged (as in :mod:`gmsop.aggregate.stats`)."""
    return float(x.mean()) if x.size and np.isfinite(x).all() else _NAN


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(standard error, degrees of freedom, two-sided p-value) of Welch's test of mean(a) = mean(b);
    needs two runs a side and some spread on at least one side."""
    va, vb = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    from scipy import stats

    t = float(a.mean() - b.mean()) / se
    return se, dof, float(2.0 * stats.t.sf(abs(t), dof))


def _t_interval(diff: float, se: float, dof: float, level: float) -> tuple[float, float]:
    """``diff`` ± the two-sided ``level`` quantile of Student's t with ``dof`` degrees times ``se``."""
    from scipy import stats

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


def _p_improvement(a: np.ndarray, b: np.ndarray) -> float:
    """P(a run of ``a`` has lower error than a run of ``b``) over all pairs, ties counting one half."""
    return float((np.less.outer(a, b).sum() + 0.5 * np.equal.outer(a, b).sum()) / (a.size * b.size))


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
    """Test ``claim`` on the top-1 errors (percent) of each row's finished runs.

    ``*_classes`` is the number of classes of the row's dataset, for the failed-seed check
    (:func:`failed_seeds`); None checks only for non-finite errors. The bootstrap draws from
    ``numpy.random.default_rng(seed)``, so the same inputs always give the same interval.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    a = np.asarray(list(better_errors), dtype=float).ravel()
    b = np.asarray(list(worse_errors), dtype=float).ravel()
    ma, mb = _mean(a), _mean(b)
    out = dict(
        claim=str(claim),
        better=claim.better,
        worse=claim.worse,
        better_mean=ma,
        worse_mean=mb,
        diff=ma - mb,
        ci_low=_NAN,
        ci_high=_NAN,
        boot_low=_NAN,
        boot_high=_NAN,
        n_better=int(a.size),
        n_worse=int(b.size),
        p_improvement=_NAN,
        p_value=_NAN,
        se=_NAN,
        dof=_NAN,
        n_failed=0,
    )
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
        boot_low, boot_high = _bootstrap_interval(a, b, level, n_boot, seed)
        out.update(boot_low=boot_low, boot_high=boot_high, p_improvement=_p_improvement(a, b))
    verdict = "holds" if high < 0 else "reversed" if low > 0 else "inconclusive"
    return ClaimResult(**out, verdict=verdict)


def evaluate_claims(
    claims: Iterable[Claim | str],
    errors: Mapping[str, Sequence[float]],
    classes: Mapping[str, int | None],
    *,
    level: float = LEVEL,
    n_boot: int = 10000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per claim, in order, with columns :data:`CLAIM_COLUMNS`.

    ``errors``: row label -> top-1 errors of its finished runs (a label absent is "missing");
    ``classes``: row label -> number of classes (absent or None skips the chance check).
    """
    rows = []
    for c in claims:
        c = parse_claim(c) if isinstance(c, str) else c
        r = evaluate_claim(
            c,
            errors.get(c.better, ()),
            errors.get(c.worse, ()),
            classes.get(c.better),
            classes.get(c.worse),
            level=level,
            n_boot=n_boot,
            seed=seed,
        )
        rows.append(r.to_dict())
    import pandas as pd

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


def adjust_holm(claims: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """``claims`` (columns :data:`CLAIM_COLUMNS`) with Holm's step-down procedure over its family:
    every claim tested with an interval (a verdict in :data:`TESTED`), at family-wise error
    ``1 - level``.

    Adds :data:`HOLM_COLUMNS`: ``p_holm``, the adjusted p-value (:func:`holm`); ``verdict_holm``,
    "holds"/"reversed" when ``p_holm < 1 - level`` (by the sign of ``diff``), else "inconclusive";
    and ``holm_low``/``holm_high``, the Welch interval at the level Holm tests the claim at, so
    that it excludes 0 exactly when the adjusted verdict is a direction: 1 - alpha/(m - i + 1) for
    the i-th smallest p-value while all smaller ones are rejected, and from the first claim not
    rejected on, that claim's level. Claims outside the family keep their verdict and NaN.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    alpha = 1.0 - level
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
