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
