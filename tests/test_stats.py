"""snnl.stats: confidence intervals and tests, checked against the textbook formulas by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from snnl.stats import compare, fmt_ci, fmt_p, summarize

# two-sided 95% Student t quantiles, from tables: df 1, 2, 3
T975 = {1: 12.706, 2: 4.303, 3: 3.182}


def test_summary_is_mean_std_and_t_interval():
    x = [1.0, 2.0, 4.0, 5.0]
    s = summarize(x)
    sd = math.sqrt(sum((v - 3) ** 2 for v in x) / 3)  # 1.8257
    half = T975[3] * sd / 2
    assert s.n == 4 and s.mean == 3 and s.std == pytest.approx(sd)
    assert s.ci == pytest.approx((3 - half, 3 + half), abs=2e-3)
    assert s.contains(3 + half - 0.01) and not s.contains(3 + half + 0.01)


def test_one_value_has_no_interval_and_bad_values_are_refused():
    s = summarize([98.5])
    assert s.ci is None and s.std is None and s.contains(98.5) is None
    assert fmt_ci(s) == "98.50 (1 run)"
    with pytest.raises(ValueError, match="at least one"):
        summarize([])
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, float("nan")])


def test_welch_test_by_hand():
    a, b = [10.0, 11.0, 12.0], [7.0, 8.0, 10.0, 11.0]
    c = compare(a, b)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    from scipy.stats import t as tdist  # the reference distribution only; the statistic is by hand
    assert c.welch_p == pytest.approx(2 * tdist.sf(abs(t), df))
    assert c.diff == pytest.approx(2.0)
    half = tdist.ppf(0.975, df) * math.sqrt(va + vb)
    assert c.diff_ci == pytest.approx((2 - half, 2 + half))
    assert c.paired_p is None and c.p == c.welch_p


def test_paired_test_over_shared_seeds():
    # a is b plus a nearly constant gain: paired test significant, Welch not
    b = [90.0, 95.0, 85.0, 99.0]
    a = [v + g for v, g in zip(b, (1.0, 1.1, 0.9, 1.0))]
    c = compare(a, b, [0, 1, 2, 3], [0, 1, 2, 3])
    d = np.array(a) - np.array(b)
    t = d.mean() / (d.std(ddof=1) / 2)
    assert c.paired_n == 4 and c.diff == pytest.approx(1.0)
    assert c.paired_p < 1e-3 < 0.5 < c.welch_p
    half = T975[3] * d.std(ddof=1) / 2
    assert c.diff_ci == pytest.approx((1 - half, 1 + half), abs=1e-3)
    assert t > 20
    # seeds that do not match are not paired
    c2 = compare(a, b, [0, 1, 2, 3], [4, 5, 6, 7])
    assert c2.paired_n == 0 and c2.p == c2.welch_p


def test_format_p():
    assert fmt_p(None) == "–" and fmt_p(0.0312) == "0.031" and fmt_p(2e-5) == "2.0e-05"


# ---- one run, many test points ----------------------------------------------------------------------
def test_proportion_intervals_match_published_examples():
    from snnl.stats import diff_proportions, proportion_ci
    assert proportion_ci(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)  # Wilson, by hand
    d, (lo, hi) = diff_proportions(56 / 70, 70, 48 / 80, 80)  # Newcombe (1998), Table II, example (a)
    assert d == pytest.approx(0.2) and (lo, hi) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    with pytest.raises(ValueError, match="successes"):
        proportion_ci(5, 3)


def test_the_interval_of_two_correlations_covers_the_truth_95_percent_of_the_time():
    from snnl.stats import diff_correlations
    rng = np.random.default_rng(0)
    cov = [[1, 0.6], [0.6, 1]]
    hits = 0
    for _ in range(600):
        a, b = (rng.multivariate_normal([0, 0], cov, size=25) for _ in range(2))
        r1, r2 = np.corrcoef(a.T)[0, 1], np.corrcoef(b.T)[0, 1]
        _, (lo, hi) = diff_correlations(r1, 25, r2, 25)
        hits += lo <= 0 <= hi
    assert 0.92 <= hits / 600 <= 0.98
    assert diff_correlations(0.99, 100, 0.5, 100)[1][0] > 0  # a clear difference is seen
    with pytest.raises(ValueError, match="at least 4"):
        diff_correlations(0.5, 3, 0.5, 10)


def test_means_from_summaries_agree_with_welch_on_the_values():
    from snnl.stats import compare, diff_means_from_stats
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 0.3, 10), rng.normal(0.7, 0.5, 12)
    d, ci, p = diff_means_from_stats(a.mean(), a.std(ddof=1), 10, b.mean(), b.std(ddof=1), 12)
    c = compare(a, b)
    assert d == pytest.approx(c.diff) and ci == pytest.approx(c.diff_ci) and p == pytest.approx(c.welch_p)


def test_bootstrap_and_the_interval_verdict():
    from snnl.stats import bootstrap_ci, interval_verdict
    x = np.random.default_rng(2).normal(5.0, 1.0, 400)
    lo, hi = bootstrap_ci(x, np.mean)
    assert lo < 5.0 < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.25)
    assert interval_verdict((0.1, 0.3)) == "holds" and interval_verdict((-0.3, -0.1)) == "does not hold"
    assert interval_verdict((-0.1, 0.3)) == "inconclusive" and interval_verdict(None) is None
    assert interval_verdict((-0.3, -0.1), higher=False) == "holds"


def test_auroc_standard_error_matches_hanley_mcneil_and_a_simulation():
    from snnl.stats import auroc_se, diff_aurocs
    # by hand: q1 = 0.9 / 1.1, q2 = 2 * 0.81 / 1.9; (0.09 + 49 (q1 - 0.81) + 49 (q2 - 0.81)) / 2500 = 0.0010319
    assert auroc_se(0.9, 50, 50) == pytest.approx(0.03212, abs=1e-4)
    rng = np.random.default_rng(3)
    from sklearn.metrics import roc_auc_score
    aucs = []
    for _ in range(400):
        pos, neg = rng.normal(1.8, 1, 60), rng.normal(0, 1, 80)
        aucs.append(roc_auc_score(np.r_[np.ones(60), np.zeros(80)], np.r_[pos, neg]))
    assert auroc_se(float(np.mean(aucs)), 60, 80) == pytest.approx(np.std(aucs), rel=0.15)
    d, (lo, hi) = diff_aurocs(0.95, 0.88, 2000, 2000)
    assert d == pytest.approx(0.07) and 0 < lo < d < hi
