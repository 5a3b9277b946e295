"""neuralcollapse.stats: exact Student t against SciPy, Holm and TOST on hand examples."""

from __future__ import annotations

import math
import statistics

import pytest

from neuralcollapse.stats import (
    betainc,
    holm,
    paired_test,
    paired_test_from_summary,
    t_cdf,
    t_ppf,
    t_sf,
    tost,
)

T_VALUES = (0.0, 0.05, 0.3, 1.0, 1.7, 2.0, 2.5, 3.3, 5.0, 9.0, 25.0, 120.0)
PROBABILITIES = (1e-6, 0.001, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.975, 0.99, 0.999)


def test_t_distribution_matches_scipy_over_df_1_to_60():
    stats = pytest.importorskip("scipy.stats", reason="SciPy is the reference here")
    for df in range(1, 61):
        for t in T_VALUES:
            for x in (t, -t):
                assert abs(t_cdf(x, df) - stats.t.cdf(x, df)) <= 1e-10
                assert abs(t_sf(x, df) - stats.t.sf(x, df)) <= 1e-10
        for p in PROBABILITIES:
            expected = stats.t.ppf(p, df)
            assert abs(t_ppf(p, df) - expected) <= 1e-10 * max(1.0, abs(expected)), (p, df)


def test_small_tail_probabilities_are_relatively_exact():
    stats = pytest.importorskip("scipy.stats", reason="SciPy is the reference here")
    for df in (1, 4, 30, 60):
        for t in (10.0, 40.0):
            expected = stats.t.sf(t, df)
            assert abs(t_sf(t, df) - expected) <= 1e-9 * expected


def test_incomplete_beta_matches_scipy_and_closed_forms():
    special = pytest.importorskip("scipy.special", reason="SciPy is the reference here")
    for a, b in ((0.5, 0.5), (2.0, 0.5), (30.0, 0.5), (3.0, 7.0)):
        for x in (0.001, 0.2, 0.5, 0.8, 0.999):
            assert abs(betainc(a, b, x) - special.betainc(a, b, x)) <= 1e-12
    assert betainc(1.0, 1.0, 0.3) == pytest.approx(0.3, abs=1e-15)  # uniform
    assert betainc(2.0, 3.0, 0.0) == 0.0 and betainc(2.0, 3.0, 1.0) == 1.0


def test_t_closed_forms_without_scipy():
    # df = 1 is Cauchy; df = 2 has P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2.
    for t in (0.5, 2.0, 12.7):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-14)
        assert t_sf(t, 2) == pytest.approx((1 - t / math.sqrt(t * t + 2)) / 2, abs=1e-14)
    assert t_ppf(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-12)
    assert t_ppf(0.5, 7) == 0.0
    with pytest.raises(ValueError):
        t_ppf(1.0, 3)
    with pytest.raises(ValueError):
        t_sf(1.0, 0)


def test_paired_test_matches_scipy_one_sample_test():
    stats = pytest.importorskip("scipy.stats", reason="SciPy is the reference here")
    diffs = [0.02, 0.03, 0.025, 0.04, 0.03]
    test = paired_test(diffs)
    ref = stats.ttest_1samp(diffs, 0.0, alternative="greater")
    assert test.t == pytest.approx(ref.statistic, rel=1e-12)
    assert test.p_for == pytest.approx(ref.pvalue, rel=1e-9)
    assert test.p_against == pytest.approx(1 - ref.pvalue, rel=1e-9)
    interval = stats.t.interval(0.95, 4, loc=statistics.fmean(diffs), scale=stats.sem(diffs))
    assert test.ci95 == pytest.approx(interval, rel=1e-9)
    # "lower is better" flips the direction of t and of the p-values, not the interval
    lower = paired_test(diffs, higher_is_better=False)
    assert lower.t == pytest.approx(-test.t) and lower.p_for == pytest.approx(test.p_against)
    assert lower.ci95 == test.ci95


def test_paired_test_edge_cases():
    same = paired_test([-2.0, -2.0, -2.0], higher_is_better=False)
    assert same.t == math.inf and same.p_for == 0.0 and same.p_against == 1.0
    nothing = paired_test([0.0, 0.0, 0.0])
    assert nothing.p_for == 1.0 and nothing.p_against == 1.0  # no effect, no spread
    with pytest.raises(ValueError, match="at least 2 seeds"):
        paired_test([0.5])


def test_holm_on_a_hand_example():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02]  # one test: unadjusted
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([1.5])


def test_tost_inside_the_margin_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, SE 1/sqrt(3), df 2; margin 5
    test = tost([1.0, 2.0, 3.0], margin=5.0)
    t_high = 3 * math.sqrt(3)  # (5 - 2) / SE, the binding side
    p_high = (1 - t_high / math.sqrt(t_high**2 + 2)) / 2  # df = 2 closed form: 0.01755
    assert test.kind == "equivalence" and test.t == pytest.approx(t_high)
    assert test.p_for == pytest.approx(p_high, abs=1e-14)
    assert test.p_for < 0.05 < test.p_against  # equivalent within +-5


def test_tost_outside_the_margin_by_hand():
    # differences -6, -7, -8: mean -7, worse than -5 by 2 = 3.46 SE
    test = tost([-6.0, -7.0, -8.0], margin=5.0)
    t_low = -2 * math.sqrt(3)
    p_worse = (1 - 2 * math.sqrt(3) / math.sqrt(12 + 2)) / 2  # P(T > 3.46), df 2: 0.0371
    assert test.p_against == pytest.approx(p_worse, abs=1e-14)
    assert test.p_against < 0.05 and test.p_for > 0.5
    assert test.t == pytest.approx(t_low)
    # inside the margin but too noisy to show it: neither side at 5%
    noisy = tost([-4.0, 3.0, -6.0, 2.0], margin=5.0)
    assert noisy.p_for > 0.05 and noisy.p_against > 0.05


def test_summary_statistics_give_the_same_test():
    diffs = [0.1, -0.3, 0.25, 0.4, 0.05]
    direct = paired_test(diffs, margin=0.5)
    summary = paired_test_from_summary(
        5, statistics.fmean(diffs), statistics.stdev(diffs), margin=0.5
    )
    assert direct == summary
    with pytest.raises(ValueError, match="margin"):
        paired_test_from_summary(5, 0.0, 1.0, margin=0.0)
