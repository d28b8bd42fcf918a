"""Statistics over seeds: means with 95% confidence intervals, and tests of two variants.
For a single run measured on many test points: intervals of a proportion, of the difference of
two proportions, of two correlations and of two means known by their summaries, a bootstrap, and
:func:`interval_verdict`, the one rule by which the report turns an interval into a status.

Every comparison of two means in the book goes through :func:`compare`: the mean, standard
deviation and 95% confidence interval (Student's t) of each side, the difference of the means
with its own 95% interval, Welch's t-test and, when both sides ran the same seeds, the paired
t-test over those seeds. All from :mod:`scipy.stats` (the extra ``snnl[experiments]``); with
fewer than two values an interval or a test is ``None`` (never a made-up number).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from snnl.extras import require

stats = require("scipy.stats", "experiments", "snnl.stats")

LEVEL = 0.95


def _quiet(fn, *args):
    """A scipy test without its "nearly identical data" warning (degenerate cases are handled here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args)


@dataclass
class Summary:
    """Mean, sample standard deviation and 95% CI of the mean of ``n`` values."""

    n: int
    mean: float
    std: float | None
    ci: tuple[float, float] | None

    def contains(self, value: float) -> bool | None:
        """Whether ``value`` lies inside the interval (None without an interval)."""
        return None if self.ci is None else bool(self.ci[0] <= value <= self.ci[1])

    def as_dict(self) -> dict:
        return asdict(self)


def _values(values: Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"{what}: need at least one value, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: values must be finite, got {x.tolist()}")
    return x


def summarize(values: Sequence[float], level: float = LEVEL) -> Summary:
    """:class:`Summary` of ``values`` (the t-interval of the mean; a single value has none)."""
    x = _values(values, "summarize")
    if len(x) < 2:
        return Summary(1, float(x[0]), None, None)
    std = float(x.std(ddof=1))
    if std == 0:
        ci = (float(x.mean()), float(x.mean()))
    else:
        lo, hi = _quiet(stats.ttest_1samp, x, 0.0).confidence_interval(level)
        ci = (float(lo), float(hi))
    return Summary(len(x), float(x.mean()), std, ci)


@dataclass
class Comparison:
    """``a`` (e.g. entangled) against ``b`` (its baseline)."""

    a: Summary
    b: Summary
    diff: float  # mean(a) - mean(b)
    diff_ci: tuple[float, float] | None  # 95% CI of the difference (paired when paired, else Welch)
    welch_p: float | None  # Welch's two-sided t-test
    paired_p: float | None  # paired two-sided t-test over the shared seeds (None when not paired)
    paired_n: int  # number of shared seeds

    @property
    def direction(self) -> str:
        """``"higher"`` / ``"lower"`` when the 95% CI of the difference excludes 0, else
        ``"no significant difference"``; ``"too few runs"`` without an interval."""
        if self.diff_ci is None:
            return "too few runs"
        if self.diff_ci[0] > 0:
            return "higher"
        return "lower" if self.diff_ci[1] < 0 else "no significant difference"

    @property
    def p(self) -> float | None:
        """The test a reader should read: paired when the seeds are shared, else Welch."""
        return self.paired_p if self.paired_p is not None else self.welch_p

    def as_dict(self) -> dict:
        return {"a": self.a.as_dict(), "b": self.b.as_dict(), "diff": self.diff, "diff_ci": self.diff_ci,
                "welch_p": self.welch_p, "paired_p": self.paired_p, "paired_n": self.paired_n, "p": self.p}


def _finite_or_none(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def compare(a: Sequence[float], b: Sequence[float], seeds_a: Sequence[int] | None = None,
            seeds_b: Sequence[int] | None = None, level: float = LEVEL) -> Comparison:
    """Compare two sets of runs. With ``seeds_a``/``seeds_b`` the runs sharing a seed are paired
    (paired t-test over them, and the paired CI of the difference when at least two are shared)."""
    xa, xb = _values(a, "compare (a)"), _values(b, "compare (b)")
    sa, sb = summarize(xa, level), summarize(xb, level)
    diff = float(xa.mean() - xb.mean())
    welch_p, diff_ci = None, None
    if len(xa) > 1 and len(xb) > 1 and (xa.std() > 0 or xb.std() > 0):
        res = _quiet(lambda a, b: stats.ttest_ind(a, b, equal_var=False), xa, xb)
        welch_p = _finite_or_none(res.pvalue)
        diff_ci = tuple(float(v) for v in res.confidence_interval(level))
    paired_p, paired_n = None, 0
    if seeds_a is not None and seeds_b is not None:
        if len(seeds_a) != len(xa) or len(seeds_b) != len(xb):
            raise ValueError("compare: one seed per value is needed")
        by_b = dict(zip(seeds_b, xb))
        pairs = [(v, by_b[s]) for s, v in zip(seeds_a, xa) if s in by_b]
        paired_n = len(pairs)
        if paired_n > 1:
            pa, pb = np.array(pairs).T
            d = pa - pb
            if d.std() > 0:
                res = _quiet(stats.ttest_rel, pa, pb)
                paired_p = _finite_or_none(res.pvalue)
                diff_ci = tuple(float(v) for v in res.confidence_interval(level))
            diff = float(d.mean()) if paired_n == len(xa) == len(xb) else diff
    return Comparison(sa, sb, diff, diff_ci, welch_p, paired_p, paired_n)


def fmt_ci(s: Summary | None, digits: int = 2) -> str:
    """``"98.55 ± 0.12 [98.36, 98.74]"`` (mean ± std [95% CI]); ``"98.55 (1 run)"`` alone."""
    if s is None:
        return "–"
    if s.ci is None:
        return f"{s.mean:.{digits}f} (1 run)"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f} [{s.ci[0]:.{digits}f}, {s.ci[1]:.{digits}f}]"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


# ---- one run, many test points: intervals from counts and summary numbers -------------------------
def proportion_ci(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (scipy's ``binomtest``)."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"proportion_ci: need 0 <= successes <= n and n >= 1, got {successes}, {n}")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)


def diff_proportions(p1: float, n1: int, p2: float, n2: int, level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """``p1 - p2`` of two independent proportions (e.g. two models' accuracies on ``n`` test points
    each) with Newcombe's hybrid score interval (his method 10, from the two Wilson intervals)."""
    k1, k2 = round(p1 * n1), round(p2 * n2)
    (l1, u1), (l2, u2) = proportion_ci(k1, n1, level), proportion_ci(k2, n2, level)
    a, b = k1 / n1, k2 / n2
    d = a - b
    return d, (d - math.sqrt((a - l1) ** 2 + (u2 - b) ** 2), d + math.sqrt((u1 - a) ** 2 + (b - l2) ** 2))


def diff_correlations(r1: float, n1: int, r2: float, n2: int, level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """``r1 - r2`` of two independent Pearson correlations over ``n1`` and ``n2`` points, with Zou's
    (2007) interval, built from each correlation's Fisher-z interval."""
    if min(n1, n2) < 4:
        raise ValueError(f"diff_correlations: need at least 4 points per correlation, got {n1}, {n2}")
    z = stats.norm.ppf(0.5 + level / 2)

    def fisher(r, n):
        r = min(max(r, -0.999999), 0.999999)
        c = math.atanh(r)
        return math.tanh(c - z / math.sqrt(n - 3)), math.tanh(c + z / math.sqrt(n - 3))

    (l1, u1), (l2, u2) = fisher(r1, n1), fisher(r2, n2)
    d = r1 - r2
    return d, (d - math.sqrt((r1 - l1) ** 2 + (u2 - r2) ** 2), d + math.sqrt((u1 - r1) ** 2 + (r2 - l2) ** 2))


def diff_means_from_stats(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int,
                          level: float = LEVEL) -> tuple[float, tuple[float, float], float]:
    """``m1 - m2`` of two means known by their mean, sample std and count (e.g. a measure over test
    batches), with Welch's interval and p-value (scipy's ``ttest_ind_from_stats``)."""
    v1, v2 = s1 ** 2 / n1, s2 ** 2 / n2
    se = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue
    return m1 - m2, (m1 - m2 - half, m1 - m2 + half), float(p)


def bootstrap_ci(data, statistic, level: float = LEVEL, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(data)`` over the rows of ``data`` (scipy's
    ``bootstrap`` over the row indices, so rows may be points of any shape), for a measure of one
    run over its test points."""
    data = np.asarray(data)
    rows = np.arange(len(data))
    res = stats.bootstrap((rows,), lambda i: statistic(data[i.astype(int)]), vectorized=False,
                          n_resamples=n_resamples, confidence_level=level, method="percentile", random_state=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def interval_verdict(ci: tuple[float, float] | None, higher: bool = True) -> str | None:
    """How a claimed difference fares against its 95% interval: ``"holds"`` when the interval lies
    on the claimed side of 0 (above 0 for ``higher``, below for not ``higher``), ``"does not hold"``
    when it lies on the other side, ``"inconclusive"`` when it contains 0; None without one."""
    if ci is None:
        return None
    lo, hi = ci
    if lo > 0:
        return "holds" if higher else "does not hold"
    if hi < 0:
        return "does not hold" if higher else "holds"
    return "inconclusive"


def auroc_se(auroc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUROC (Hanley & McNeil, 1982) from its value and the two class sizes."""
    a = auroc
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg))


def diff_aurocs(a1: float, a2: float, n_pos: int, n_neg: int, level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """``a1 - a2`` of two AUROCs with a normal 95% interval from their Hanley-McNeil standard errors
    (taken as independent: conservative when both are measured on the same points)."""
    se = math.hypot(auroc_se(a1, n_pos, n_neg), auroc_se(a2, n_pos, n_neg))
    z = float(stats.norm.ppf(0.5 + level / 2))
    return a1 - a2, (a1 - a2 - z * se, a1 - a2 + z * se)
