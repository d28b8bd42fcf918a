"""Statistics over seeds: means with 95% confidence intervals, and tests of two variants.

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
