"""Statistics of paired differences (scipy.stats): the mean, a Student-t interval, the two-sided paired t-test,
and Holm's step-down adjustment over a family of tests.

Why t and not a bootstrap: with the 2-5 seeds a grid runs, a bootstrap has at most a few dozen
distinct resamples and its percentile interval undercovers badly (for n = 3 it is close to
[min, max], about 75% coverage); the t-interval is exact for normal differences and the honest
small-n choice. Why Holm: a claims file runs dozens of tests at 95%, so some raw "holds" are
chance; Holm's adjustment keeps the probability of any false verdict in the file at most 5% for any
dependence between the tests (Bonferroni's guarantee), and rejects at least as much as Bonferroni.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95
ALPHA = 1 - LEVEL


@dataclass(frozen=True)
class PairedStats:
    n: int
    mean: float | None
    low: float | None      # the 95% t-interval; None when n < 2
    high: float | None
    p: float | None = None  # two-sided paired t-test of mean 0; None when n < 2

    @property
    def has_interval(self) -> bool:
        return self.low is not None


def paired_stats(diffs: Sequence[float], level: float = LEVEL) -> PairedStats:
    """Mean, Student-t interval and two-sided t-test p-value of paired differences (None where undefined).
    Differences without spread: the interval is the point, p is 0 (1 when they are all 0)."""
    n = len(diffs)
    if n == 0:
        return PairedStats(0, None, None, None)
    mean = math.fsum(diffs) / n
    if n < 2:
        return PairedStats(n, mean, None, None)
    x = np.asarray(diffs, dtype=float)
    s = float(x.std(ddof=1))
    if s == 0.0:
        return PairedStats(n, mean, mean, mean, 1.0 if mean == 0 else 0.0)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * s / math.sqrt(n)
    p = float(stats.ttest_1samp(x, 0.0).pvalue)
    return PairedStats(n, mean, mean - half, mean + half, p)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the i-th smallest p times (m - i + 1),
    made monotone, capped at 1. Reject where the adjusted value is below alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
