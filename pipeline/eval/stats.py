"""Paired tests whose error rates hold at small n, and the run-level decision over all leaves.

- ``sign_flip_p``: the exact paired permutation test of the mean gain (every one of the 2^m sign
  patterns of the m non-zero gains when m <= ``EXACT_UP_TO``, else a seeded Monte Carlo sample
  that counts the observed pattern). Under "the new model is the deployed model" each gain is
  as likely to be +g as -g, so the p-value is exact at any n; with 0/1 key-fact hits it is the
  exact sign test on the items that changed.
- ``sign_flip_interval``: the interval of shifts the same test does not reject (two one-sided
  tests at (1 - level) / 2 each), so the printed interval and the class never disagree.
- ``holm``: Holm's step-down adjustment; the run is rejected only when a leaf's *adjusted*
  p-value for a regression is below alpha, which bounds the chance of rejecting a run whose
  model changed nothing by alpha, however many leaves are asked.

``tests/test_verdict_stats.py`` measures these rates by simulation with this code.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

EXACT_UP_TO = 16
MONTE_CARLO = 20_000


@lru_cache(maxsize=32)
def _patterns(m: int, seed: int = 0) -> np.ndarray:
    """±1 sign patterns, one per row: all 2^m, or MONTE_CARLO random ones plus the identity."""
    if m <= EXACT_UP_TO:
        bits = (np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1
        return (1 - 2 * bits).astype(np.float64)
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(MONTE_CARLO, m))
    return np.vstack([np.ones((1, m)), signs])


def sign_flip_p(gains, alternative: str = "greater", shift: float = 0.0) -> float:
    """P-value of the paired sign-flip test of mean(gains) > shift ('greater'), < shift ('less')
    or != shift ('two-sided')."""
    g = np.asarray(gains, dtype=np.float64) - shift
    g = g[np.abs(g) > 1e-12]  # a zero gain flips to itself
    if g.size == 0:
        return 1.0
    if np.allclose(np.abs(g), abs(g[0])):
        return _sign_test(int((g > 0).sum()), g.size, alternative)
    stats = _patterns(g.size) @ g
    obs = g.sum()
    tol = 1e-9 * max(1.0, np.abs(g).sum())
    if alternative == "greater":
        return float(np.mean(stats >= obs - tol))
    if alternative == "less":
        return float(np.mean(stats <= obs + tol))
    return float(np.mean(np.abs(stats) >= abs(obs) - tol))


def _sign_test(positive: int, m: int, alternative: str) -> float:
    """The same test when every non-zero gain has one size (0/1 hits): the sum is set by the
    number of positive signs, Binomial(m, 1/2) under the null (exact, no enumeration)."""
    from math import comb
    pmf = [comb(m, k) / 2 ** m for k in range(m + 1)]
    if alternative == "greater":
        return float(sum(pmf[positive:]))
    if alternative == "less":
        return float(sum(pmf[:positive + 1]))
    dev = abs(2 * positive - m)
    return float(sum(p for k, p in enumerate(pmf) if abs(2 * k - m) >= dev))


def sign_flip_interval(gains, level: float = 0.90, iterations: int = 24) -> tuple[float, float] | None:
    """The shifts d for which neither one-sided test of mean(gains) vs d rejects at
    (1 - level) / 2: an exact interval when the gains are symmetric about their mean. None when
    the data cannot reject any shift at that level (fewer than log2(2 / (1 - level)) items):
    an interval of everything says nothing and is not printed."""
    g = np.asarray(gains, dtype=np.float64)
    tail = (1 - level) / 2
    if g.size == 0 or 0.5 ** g.size > tail:
        return None
    spread = float(np.ptp(g)) + 1e-9
    lo_a, hi_a = float(g.min()) - spread, float(g.max()) + spread

    def bound(alternative: str) -> float:
        # 'greater' rejects shifts far below the mean: the lower bound is the largest shift it
        # still rejects; 'less' mirrors it. p is monotone in the shift, so bisect.
        inside, outside = float(g.mean()), (lo_a if alternative == "greater" else hi_a)
        for _ in range(iterations):
            mid = (inside + outside) / 2
            if sign_flip_p(g, alternative, mid) <= tail:
                outside = mid
            else:
                inside = mid
        return (inside + outside) / 2

    return bound("greater"), bound("less")


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (step-down, monotone, capped at 1)."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m, out, running = len(order), {}, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[k]))
        out[k] = running
    return out
