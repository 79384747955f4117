"""The statistics of the behaviour evaluations: a Wilson interval and an exact paired test.

Pure functions on counts, no dependencies.

* :func:`wilson_interval`: the 95% Wilson score interval of a proportion ``k / n``. Unlike the
  textbook ``p ± 1.96·sqrt(p(1-p)/n)`` it stays inside [0, 1] and is not zero-width at 0% or
  100%, which matters at the sample sizes these evaluations use (tens of items).
* :func:`mcnemar_worse_p`: the exact McNemar test, one-sided. Two checkpoints answer the *same*
  items, so their results are paired: only the *discordant* items (right before and wrong
  after, or the reverse) carry information about a change. Under "no change" each discordant
  item is equally likely to go either way, so the number that got worse is
  Binomial(discordant, 1/2), and the p-value is the chance of at least that many getting
  worse. This is the sign test on the discordant items.
"""

from __future__ import annotations

import math

__all__ = ["ALPHA", "TEST_NAME", "mcnemar_worse_p", "wilson_interval"]

#: The significance level below which a worse result counts as a regression.
ALPHA = 0.05
#: How reports name the test.
TEST_NAME = "exact McNemar test, one-sided (sign test on the discordant items)"

_Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson_interval(k: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95% by default).

    Returns ``(0.0, 1.0)`` for ``n == 0`` (nothing is known).

    >>> low, high = wilson_interval(8, 10)
    >>> round(low, 3), round(high, 3)
    (0.49, 0.943)
    >>> wilson_interval(0, 20)[0], round(wilson_interval(0, 20)[1], 3)
    (0.0, 0.161)
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At k == 0 (k == n) the lower (upper) bound is exactly 0 (1); float rounding would miss it.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def mcnemar_worse_p(worse: int, better: int) -> float:
    """One-sided exact McNemar p-value that the second of two paired results is worse.

    Args:
        worse: items the first checkpoint got right and the second wrong.
        better: items the first got wrong and the second right.

    Returns:
        ``P(X >= worse)`` for ``X ~ Binomial(worse + better, 1/2)``; ``1.0`` when no item
        changed.

    >>> mcnemar_worse_p(5, 0)  # five items lost, none gained: 1/32
    0.03125
    >>> mcnemar_worse_p(3, 3)
    0.65625
    >>> mcnemar_worse_p(0, 0)
    1.0
    """
    if worse < 0 or better < 0:
        raise ValueError(f"counts must be non-negative, got worse={worse}, better={better}")
    n = worse + better
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(worse, n + 1))
    return tail / 2**n
