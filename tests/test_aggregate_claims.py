"""The paper's claims tested on our runs: parsing, verdicts, intervals, agreement of rankings.

Intervals and scores are checked against independent computations (scipy's Welch test, a
brute-force count over seed pairs, scipy's bootstrap), not against a copy of the formulas.
"""

import ast
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gmsop.aggregate.claims import (
    CHANCE_FRACTION,
    CLAIM_COLUMNS,
    HOLM_COLUMNS,
    VERDICTS,
    ClaimResult,
    adjust_holm,
    chance_error,
    evaluate_claim,
    evaluate_claims,
    failed_seeds,
    holm,
    kendall_agreement,
    learned,
    ranks,
    verdict_kind,
)
from gmsop.claim_spec import Claim, parse_claim, parse_claims

AB = Claim("A", "B")
NAN = float("nan")

#: Unequal spread and unequal numbers of seeds: where Welch and Student part ways.
UNEQUAL = [
    ([40.0, 41.0, 40.5], [50.0, 51.0, 49.0, 47.5]),
    ([30.0, 40.0, 50.0], [51.0, 52.0, 53.0, 51.5, 52.5, 52.0, 51.0, 53.0, 52.0, 52.0]),
    ([20.1, 20.3], [19.0, 25.0, 22.0, 30.5, 21.0]),
    ([61.2, 58.4, 66.0, 59.9, 63.3], [60.0, 60.5, 61.0]),
]


def one(a, b, cb=None, cw=None, **kw):
    return evaluate_claim(AB, a, b, cb, cw, **kw)


def untested(r):
    return all(
        math.isnan(x) for x in (r.ci_low, r.ci_high, r.boot_low, r.boot_high, r.p_improvement, r.p_value)
    )


class TestParse:
    def test_labels_with_symbols_and_spaces(self):
        c = parse_claim("GM-SOP-16-8 + WRN-36-2 < GM-GAP-16-8*", ["GM-SOP-16-8 + WRN-36-2", "GM-GAP-16-8*"])
        assert (c.better, c.worse) == ("GM-SOP-16-8 + WRN-36-2", "GM-GAP-16-8*")
        assert str(c) == "GM-SOP-16-8 + WRN-36-2 < GM-GAP-16-8*"

    @pytest.mark.parametrize(
        "text", ["SR-SOP<ResNet-18", "SR-SOP > ResNet-18", "A < B < C", " < B", "A < A", 3]
    )
    def test_malformed(self, text):
        with pytest.raises(ValueError, match="orderings"):
            parse_claim(text)

    def test_unknown_label_lists_rows(self):
        with pytest.raises(ValueError, match=r"\['SR-SOB'\].*rows are \['SR-SOP', 'ResNet-18'\]"):
            parse_claims(["SR-SOB < ResNet-18"], ["SR-SOP", "ResNet-18"], "experiments.table2.orderings")
        with pytest.raises(ValueError, match="list"):
            parse_claims("SR-SOP < ResNet-18")

    def test_errors_name_the_item_and_the_text(self):
        with pytest.raises(ValueError, match=r"^cfg\.orderings\[1\]: 'A<B' is not of the form"):
            parse_claims(["A < B", "A<B"], where="cfg.orderings")
        assert parse_claims(None) == ()
        assert parse_claims(["A < B", "C < A"], ["A", "B", "C"]) == (Claim("A", "B"), Claim("C", "A"))


class TestChance:
    def test_threshold_is_three_quarters_of_chance(self):
        assert CHANCE_FRACTION == 0.75
        assert (
            chance_error(16) == 93.75
            and chance_error(10) == 90.0
            and chance_error(1000) == pytest.approx(99.9)
        )
        assert CHANCE_FRACTION * chance_error(16) == 70.3125
        assert learned(70.0, 16) and learned(70.3125, 16) and not learned(71.0, 16)
        assert not learned(NAN, 16) and not learned(math.inf, 16)

    @pytest.mark.parametrize("classes", [0, 1, 2.5, True, None])
    def test_bad_classes(self, classes):
        with pytest.raises(ValueError, match="classes"):
            chance_error(classes)

    def test_16_classes_at_70_learned_at_71_not(self):
        learned_rows = one([70.0, 70.3, 69.9], [80.0, 80.5, 79.8], 16, None)
        assert learned_rows.verdict == "holds"
        r = one([70.0, 70.3, 69.9], [71.0, 71.0, 71.2], 16, 16)
        assert r.verdict == "not learned" and r.diff == pytest.approx(-1.0) and untested(r)
        assert one([71.0, 71.5], [60.0, 60.5], 16, 16).verdict == "not learned"  # the better side
        assert one([70.0, 70.3, 69.9], [71.0, 71.0, 71.2], 16, None).verdict == "holds"  # None: no check

    def test_failed_seeds_one_by_one(self):
        assert failed_seeds([30.7, 84.8, 28.2, NAN, math.inf, 70.3125], 16).tolist() == [
            False,
            True,
            False,
            True,
            True,
            False,
        ]
        assert failed_seeds([95.0, NAN], None).tolist() == [False, True]  # classes unknown: only divergence


class TestVerdicts:
    def test_clear_win_holds_and_reversed(self):
        r = one([40.0, 41.0, 40.5], [50.0, 51.0, 49.0], 10, 10)
        assert r.verdict == "holds" and r.diff == pytest.approx(-9.5) and r.ci_high < 0
        assert (r.n_better, r.n_worse, r.better_mean, r.worse_mean) == (3, 3, 40.5, 50.0)
        assert r.p_improvement == 1.0 and r.boot_high < 0
        r = one([50.0, 51.0, 49.0], [40.0, 41.0, 40.5], 10, 10)
        assert r.verdict == "reversed" and r.ci_low > 0 and r.p_improvement == 0.0

    def test_small_difference_is_inconclusive_not_a_direction(self):
        r = one([40.0, 44.0, 42.0], [41.0, 45.0, 43.5], 10, 10)
        assert r.verdict == "inconclusive" and r.diff < 0 and r.ci_low < 0 < r.ci_high

    def test_missing(self):
        r = one([], [40.0, 41.0])
        assert r.verdict == "missing" and math.isnan(r.diff) and r.worse_mean == 40.5 and untested(r)
        assert one([40.0, 41.0], []).verdict == "missing"
        assert one([], [NAN]).verdict == "missing"  # nothing to compare beats a diverged run

    @pytest.mark.parametrize("a,b", [([NAN], [45.0]), ([NAN, math.inf], [45.0, 46.0])])
    def test_a_row_whose_every_run_diverged_is_not_learned(self, a, b):
        r = one(a, b)
        assert r.verdict == "not learned" and math.isnan(r.diff) and untested(r)

    @pytest.mark.parametrize(
        "a,b,verdict",
        [
            ([NAN, 40.0, 41.0], [45.0, 46.0, 47.0], "unstable (1 of 6 seeds failed)"),
            ([40.0, 41.0], [math.inf, 46.0], "unstable (1 of 4 seeds failed)"),
        ],
    )
    def test_a_diverged_seed_among_learned_ones_is_unstable(self, a, b, verdict):
        r = one(a, b, 10, 10)
        assert r.verdict == verdict and r.n_failed == 1 and math.isnan(r.diff) and untested(r)

    def test_a_failed_seed_in_a_row_with_a_good_mean_is_unstable(self):
        """Table 2's GM-SOP-16-8 on the embedded default: one seed of three at chance, mean 47.9."""
        gm, sr = [30.7, 84.8, 28.2], [8.5, 9.4, 7.6]
        assert np.mean(gm) < CHANCE_FRACTION * chance_error(16)  # the mean alone looks learned
        r = one(sr, gm, 16, 16)
        assert r.verdict == "unstable (1 of 6 seeds failed)" and verdict_kind(r.verdict) == "unstable"
        assert r.diff == pytest.approx(np.mean(sr) - np.mean(gm)) and untested(r)
        both = one([30.7, 84.8, 28.2], [90.0, 20.0, 21.0], 16, 16)
        assert both.verdict == "unstable (2 of 6 seeds failed)"

    def test_one_seed(self):
        r = one([40.0], [50.0, 51.0], 10, 10)
        assert r.verdict == "inconclusive (1 seed)" and r.diff == -10.5 and untested(r)
        assert one([40.0, 41.0], [50.0]).verdict == "inconclusive (1 seed)"
        assert one([80.0], [85.0], 10, 10).verdict == "not learned"  # checked before the seed count

    @pytest.mark.parametrize("a,b", [([40.0, 40.0], [41.0, 41.0]), ([40.0, 40.0, 40.0], [40.0, 40.0, 40.0])])
    def test_no_spread_is_no_test(self, a, b):
        r = one(a, b, 10, 10)
        assert r.verdict == "inconclusive (no spread)" and r.diff == np.mean(a) - np.mean(b) and untested(r)

    @pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on the zero-variance side
    def test_spread_on_one_side_is_tested(self):
        r = one([40.0, 40.0, 40.0], [45.0, 47.0, 46.0])
        ref = stats.ttest_ind([40.0, 40.0, 40.0], [45.0, 47.0, 46.0], equal_var=False)
        assert r.verdict == "holds" and r.p_value == pytest.approx(ref.pvalue)

    def test_every_verdict_is_listed(self):
        cases = [
            ([40.0, 41.0, 40.5], [50.0, 51.0, 49.0]),
            ([50.0, 51.0, 49.0], [40.0, 41.0, 40.5]),
            ([40.0, 44.0], [41.0, 45.0]),
            ([40.0, 40.0], [41.0, 41.0]),
            ([40.0], [41.0]),
            ([40.0, NAN], [41.0, 42.0]),
            ([NAN], [41.0]),
            ([], [41.0]),
        ]
        assert tuple(verdict_kind(one(a, b).verdict) for a, b in cases) == VERDICTS
        with pytest.raises(ValueError, match="'holds, within noise' is not a verdict"):
            verdict_kind("holds, within noise")


class TestWelch:
    @pytest.mark.parametrize("a,b", UNEQUAL)
    def test_interval_matches_scipy_welch(self, a, b):
        ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        r = one(a, b)
        assert (r.ci_low, r.ci_high) == pytest.approx((ref.low, ref.high), rel=1e-10, abs=1e-10)
        assert r.diff == pytest.approx(np.mean(a) - np.mean(b))

    def test_other_levels_match_scipy(self):
        a, b = UNEQUAL[2]
        ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.8)
        assert (one(a, b, level=0.8).ci_low, one(a, b, level=0.8).ci_high) == pytest.approx(
            (ref.low, ref.high)
        )

    def test_not_student(self):
        """Pooling the variance would narrow this interval until it excluded zero: Welch does not."""
        a, b = UNEQUAL[1]
        student = stats.ttest_ind(a, b, equal_var=True).confidence_interval(0.95)
        r = one(a, b)
        assert student.high < 0 < r.ci_high and r.verdict == "inconclusive"
        assert r.ci_high - r.ci_low > 2 * (student.high - student.low)


class TestProbabilityOfImprovement:
    @pytest.mark.parametrize(
        "a,b",
        [
            ([1.0, 2.0, 2.0, 5.0], [2.0, 3.0, 0.0]),
            *UNEQUAL[:2],
            UNEQUAL[3],
            ([40.0, 40.0, 41.0], [40.0, 41.0, 41.0, 39.0]),
        ],
    )
    def test_brute_force_and_mann_whitney(self, a, b):
        wins = sum(1.0 if x < y else 0.5 if x == y else 0.0 for x, y in itertools.product(a, b))
        r = one(a, b)
        assert r.p_improvement == pytest.approx(wins / (len(a) * len(b)))
        # U of the worse row counts pairs where the worse row's error is the higher one.
        u = stats.mannwhitneyu(b, a).statistic
        assert r.p_improvement == pytest.approx(u / (len(a) * len(b)))

    def test_needs_three_seeds_a_side(self):
        assert math.isnan(one([40.0, 41.0], [50.0, 51.0, 52.0]).p_improvement)
        assert one([40.0, 41.0, 42.0], [50.0, 51.0, 52.0]).p_improvement == 1.0


class TestBootstrap:
    @pytest.mark.parametrize("a,b", [UNEQUAL[0], UNEQUAL[1], UNEQUAL[3]])
    def test_contains_diff_and_is_deterministic(self, a, b):
        r = one(a, b)
        assert r.boot_low <= r.diff <= r.boot_high and r.boot_low < r.boot_high
        again = one(a, b)
        assert (again.boot_low, again.boot_high) == (r.boot_low, r.boot_high)
        other = one(a, b, seed=1)
        assert (other.boot_low, other.boot_high) != (r.boot_low, r.boot_high)

    def test_resampled_values_bound_the_interval(self):
        """Every resampled difference lies between (min a - max b) and (max a - min b)."""
        a, b = UNEQUAL[1]
        r = one(a, b)
        assert min(a) - max(b) <= r.boot_low and r.boot_high <= max(a) - min(b)

    def test_agrees_with_scipy_percentile_bootstrap(self):
        rng = np.random.default_rng(7)
        a, b = rng.normal(40.0, 2.0, 8), rng.normal(43.0, 0.5, 6)
        ref = stats.bootstrap(
            (a, b),
            lambda x, y, axis: x.mean(axis) - y.mean(axis),
            method="percentile",
            n_resamples=20000,
            rng=np.random.default_rng(3),
        ).confidence_interval
        r = one(a, b, n_boot=20000)
        assert (r.boot_low, r.boot_high) == pytest.approx((ref.low, ref.high), abs=0.15)

    def test_needs_three_runs_a_side(self):
        r = one([40.0, 41.0], [50.0, 51.0, 52.0])
        assert math.isnan(r.boot_low) and math.isnan(r.boot_high) and r.verdict == "holds"


class TestFrame:
    def test_rows_in_order_with_columns(self):
        errors = {"A": [40.0, 41.0, 40.5], "B": [50.0, 51.0, 49.0], "C": [95.0, 96.0]}
        df = evaluate_claims([Claim("A", "B"), "B < A", "A < C", "A < D"], errors, {"A": 10, "C": 10})
        assert tuple(df.columns) == CLAIM_COLUMNS
        assert list(df["claim"]) == ["A < B", "B < A", "A < C", "A < D"]
        assert list(df["verdict"]) == ["holds", "reversed", "not learned", "missing"]
        assert df.iloc[0].to_dict() == one(errors["A"], errors["B"], 10, None).to_dict()
        assert df.iloc[2]["diff"] == pytest.approx(40.5 - 95.5) and math.isnan(df.iloc[2]["ci_low"])

    def test_empty(self):
        df = evaluate_claims([], {}, {})
        assert df.empty and tuple(df.columns) == CLAIM_COLUMNS

    def test_result_fields(self):
        r = one([40.0], [41.0])
        assert isinstance(r, ClaimResult) and tuple(r.to_dict()) == CLAIM_COLUMNS
        assert CLAIM_COLUMNS[:3] == ("claim", "better", "worse") and CLAIM_COLUMNS[-1] == "verdict"
        with pytest.raises(ValueError, match="level"):
            one([40.0, 41.0], [42.0, 43.0], level=95)


def _holm_by_hand(p, alpha=0.05):
    """Holm's procedure as textbooks state it: sort, compare p_(i) with alpha / (m - i + 1), stop at
    the first that is not smaller; adjusted p_(i) = max over j <= i of (m - j + 1) p_(j), capped at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, rejected, running, stopped = [0.0] * m, [False] * m, 0.0, False
    for step, i in enumerate(order):
        running = max(running, (m - step) * p[i])
        adjusted[i] = min(1.0, running)
        stopped = stopped or not p[i] < alpha / (m - step)
        rejected[i] = not stopped
    return adjusted, rejected


class TestHolm:
    #: five tested claims (one clear, two borderline, two null), an unstable and a missing one
    ERRORS = {
        "A": [40.0, 41.0, 40.5],
        "B": [50.0, 51.0, 49.0],
        "C": [44.0, 47.0, 45.5],
        "D": [46.0, 49.5, 48.0],
        "E": [45.0, 45.5, 46.5],
        "F": [30.7, 84.8, 28.2],
        "G": [40.2, 41.5, 40.4],
    }
    CLAIMS = ["A < B", "C < B", "D < B", "A < G", "E < D", "F < B", "A < H"]

    def frame(self):
        return adjust_holm(evaluate_claims(self.CLAIMS, self.ERRORS, {k: 16 for k in self.ERRORS}))

    def test_adjusted_p_and_verdicts_match_a_hand_computation(self):
        df = self.frame()
        assert tuple(df.columns[-len(HOLM_COLUMNS) :]) == HOLM_COLUMNS
        tested = df[df["verdict"].isin(["holds", "reversed", "inconclusive"])]
        assert len(tested) == 5  # the family: the claims tested with an interval
        p = [
            stats.ttest_ind(*(self.ERRORS[x] for x in c.split(" < ")), equal_var=False).pvalue
            for c in tested["claim"]
        ]
        adjusted, rejected = _holm_by_hand(p)
        assert tested["p_holm"].tolist() == pytest.approx(adjusted)
        expected = [
            ("holds" if d < 0 else "reversed") if rej else "inconclusive"
            for d, rej in zip(tested["diff"], rejected)
        ]
        assert tested["verdict_holm"].tolist() == expected
        # the case the adjustment exists for: significant alone, not in a family of five
        assert (tested["verdict"] != tested["verdict_holm"]).any() and "holds" in expected
        untested = df[~df["verdict"].isin(["holds", "reversed", "inconclusive"])]
        assert untested["verdict_holm"].tolist() == ["unstable (1 of 6 seeds failed)", "missing"]
        assert untested["p_holm"].isna().all() and untested["holm_low"].isna().all()

    def test_holm_matches_the_hand_computation_on_ties_and_caps(self):
        p = [0.01, 0.04, 0.03, 0.005, 0.04, 0.9]
        assert holm(p).tolist() == pytest.approx(_holm_by_hand(p)[0])
        assert holm([]).size == 0
        with pytest.raises(ValueError, match="p-values"):
            holm([0.1, NAN])

    def test_holm_interval_is_welch_at_the_step_level(self):
        df = self.frame()
        tested = df[df["verdict"].isin(["holds", "reversed", "inconclusive"])].sort_values("p_value")
        m = len(tested)
        stopped = None
        for step, (_, r) in enumerate(tested.iterrows()):
            level = 0.05 / (m - step)
            stopped = stopped or (level if not r["p_value"] < level else None)
            a, b = (self.ERRORS[x] for x in r["claim"].split(" < "))
            ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(1 - (stopped or level))
            assert (r["holm_low"], r["holm_high"]) == pytest.approx((ref.low, ref.high))
            # wider than the unadjusted interval, and it excludes 0 exactly when Holm gives a direction
            assert r["holm_low"] <= r["ci_low"] and r["holm_high"] >= r["ci_high"]
            assert (r["holm_high"] < 0 or r["holm_low"] > 0) == (r["verdict_holm"] != "inconclusive")

    def test_no_family(self):
        df = adjust_holm(evaluate_claims(["A < B"], {"A": [40.0], "B": [41.0]}, {}))
        assert df["verdict_holm"].tolist() == ["inconclusive (1 seed)"] and df["p_holm"].isna().all()


class TestAgreement:
    def test_hand_computed_tau(self):
        paper = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "only_paper": 5.0, "e": 6.0}
        ours = {"a": 10.0, "b": 30.0, "c": 20.0, "d": 40.0, "e": NAN, "only_ours": 1.0}
        tau, n = kendall_agreement(paper, ours)
        assert n == 4 and tau == pytest.approx((5 - 1) / 6)  # one discordant pair (b, c) of six

    def test_matches_scipy_with_ties(self):
        paper = {"r1": 20.0, "r2": 22.5, "r3": 22.5, "r4": 19.0, "r5": 30.0, "r6": 25.0}
        ours = {"r1": 31.0, "r2": 30.0, "r3": 33.0, "r4": 30.0, "r5": 40.0, "r6": 29.0}
        tau, n = kendall_agreement(paper, ours)
        ref = stats.kendalltau([paper[k] for k in sorted(paper)], [ours[k] for k in sorted(paper)]).statistic
        assert n == 6 and tau == pytest.approx(ref) and tau != pytest.approx(0.0)
        assert kendall_agreement(paper, {k: -v for k, v in paper.items()})[0] == pytest.approx(-1.0)

    def test_too_few(self):
        tau, n = kendall_agreement({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": NAN})
        assert n == 1 and math.isnan(tau)
        assert kendall_agreement({}, {})[1] == 0

    def test_ranks_with_ties(self):
        got = ranks({"a": 3.0, "b": 1.0, "c": 3.0, "d": NAN, "e": 2.0, "f": math.inf, "g": 5.0, "h": 3.0})
        assert got == {"a": 3, "b": 1, "c": 3, "e": 2, "g": 6, "h": 3}  # "min": the tied three share rank 3
        assert ranks({}) == {} and ranks({"x": NAN}) == {}


def test_imports_only_numpy_scipy_pandas_the_claim_spec_and_stdlib():
    import sys

    path = Path(__file__).resolve().parents[1] / "gmsop/aggregate/claims.py"
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module)
    roots = {m.split(".")[0] for m in modules}
    assert roots - set(sys.stdlib_module_names) == {"numpy", "scipy", "pandas", "gmsop"}
    assert {m for m in modules if m.startswith("gmsop")} == {"gmsop.claim_spec"}
