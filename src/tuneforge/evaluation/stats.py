"""Significance of a difference between two models scored on the same examples.

* :func:`paired_bootstrap`: resample the examples with replacement (the same indices for both models),
  recompute each model's corpus score and take the percentiles of the differences (Koehn, 2004). It
  works for any metric whose score is an aggregate of per-example statistics (means, BLEU, macro-F1,
  perplexity).
* :func:`mcnemar_exact`: for 0/1 correctness, the exact (binomial) McNemar test on the discordant pairs.

Two groups of different examples (an A/B test: each request is answered by one variant):

* :func:`bootstrap_difference`: resample each group on its own and take the percentiles of the differences.
* :func:`permutation_test`: the two-sided p-value of the difference of means under shuffled group labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import comb
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BootstrapResult:
    """A paired-bootstrap estimate of ``score(B) - score(A)``.

    Attributes:
        difference: The difference on the full set of examples.
        low: Lower end of the confidence interval.
        high: Upper end of the confidence interval.
        confidence: The interval's level, e.g. 0.95.
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.
    """

    difference: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        return self.low > 0 or self.high < 0


def paired_bootstrap(
    stats_a: Sequence[Any],
    stats_b: Sequence[Any],
    aggregate: Callable[[np.ndarray], float] = np.mean,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Percentile confidence interval of ``aggregate(B) - aggregate(A)`` by the paired bootstrap.

    Args:
        stats_a: Per-example statistics of model A (numbers, or equal-length rows of numbers).
        stats_b: The same for model B, on the same examples in the same order.
        aggregate: Turns the statistics of a subset (a numpy array, one row per example) into the score.
        resamples: Number of resamples.
        confidence: Level of the interval.
        seed: Seed of the resampling; the same seed gives the same interval.

    Returns:
        The observed difference and its interval.

    Raises:
        ValueError: The two models were scored on different numbers of examples, or on none.
    """
    a, b = np.asarray(stats_a, dtype=float), np.asarray(stats_b, dtype=float)
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"paired bootstrap needs the same non-zero number of examples, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(a), size=(resamples, len(a)))  # [resamples, n]
    if aggregate is np.mean and a.ndim == 1:
        differences = b[indices].mean(axis=1) - a[indices].mean(axis=1)  # vectorized fast path
    else:
        differences = np.array([aggregate(b[i]) - aggregate(a[i]) for i in indices])
    return _interval(float(aggregate(b) - aggregate(a)), differences, confidence=confidence, seed=seed)


def _interval(observed: float, differences: np.ndarray, *, confidence: float, seed: int) -> BootstrapResult:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return BootstrapResult(difference=observed, low=float(low), high=float(high), confidence=confidence,
                           resamples=len(differences), seed=seed)


def bootstrap_difference(
    stats_a: Sequence[float],
    stats_b: Sequence[float],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Percentile confidence interval of ``mean(B) - mean(A)`` for two independent groups (each resampled on
    its own, keeping its size).

    Raises:
        ValueError: A group is empty.
    """
    a, b = np.asarray(stats_a, dtype=float), np.asarray(stats_b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"the bootstrap needs values in both groups, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)  # [resamples]
    means_b = b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(axis=1)
    return _interval(float(b.mean() - a.mean()), means_b - means_a, confidence=confidence, seed=seed)


def permutation_test(stats_a: Sequence[float], stats_b: Sequence[float], *, resamples: int = 2000,
                     seed: int = 0) -> float:
    """Two-sided p-value of ``mean(B) - mean(A)`` for independent groups: the share of random relabelings of
    the pooled values whose difference is at least as large, ``(k + 1) / (resamples + 1)``.

    Raises:
        ValueError: A group is empty.
    """
    a, b = np.asarray(stats_a, dtype=float), np.asarray(stats_b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"the permutation test needs values in both groups, got {len(a)} and {len(b)}")
    pooled, observed = np.concatenate([a, b]), abs(b.mean() - a.mean())
    rng, hits, done = np.random.default_rng(seed), 0, 0
    rows = max(1, min(resamples, 4_000_000 // len(pooled)))  # a few tens of MB per block, whatever the traffic
    while done < resamples:
        block = min(rows, resamples - done)
        shuffled = rng.permuted(np.tile(pooled, (block, 1)), axis=1)  # [block, n_a + n_b]
        differences = np.abs(shuffled[:, len(a):].mean(axis=1) - shuffled[:, :len(a)].mean(axis=1))
        hits += int(np.sum(differences >= observed - 1e-12))
        done += block
    return (hits + 1) / (resamples + 1)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test on paired 0/1 outcomes.

    Attributes:
        only_a: Examples that A got right and B wrong.
        only_b: Examples that B got right and A wrong.
        p_value: Two-sided exact p-value (binomial with p = 1/2 on the discordant pairs).
    """

    only_a: int
    only_b: int
    p_value: float


def mcnemar_exact(correct_a: Sequence[int], correct_b: Sequence[int]) -> McNemarResult:
    """McNemar's exact test: is the split of the discordant pairs unlikely under "A and B are equal"?

    The p-value is ``min(1, 2 * P(X <= min(only_a, only_b)))`` with ``X ~ Binomial(only_a + only_b, 1/2)``,
    computed in exact rational arithmetic; it is 1 when there are no discordant pairs.

    Raises:
        ValueError: The sequences differ in length or hold values other than 0 and 1.
    """
    if len(correct_a) != len(correct_b):
        raise ValueError(f"McNemar needs paired outcomes, got {len(correct_a)} and {len(correct_b)}")
    if any(v not in (0, 1) for v in (*correct_a, *correct_b)):
        raise ValueError("McNemar needs 0/1 outcomes")
    only_a = sum(1 for x, y in zip(correct_a, correct_b) if x and not y)
    only_b = sum(1 for x, y in zip(correct_a, correct_b) if y and not x)
    n = only_a + only_b
    if n == 0:
        return McNemarResult(0, 0, 1.0)
    tail = Fraction(sum(comb(n, k) for k in range(min(only_a, only_b) + 1)), 2**n)
    return McNemarResult(only_a, only_b, float(min(Fraction(1), 2 * tail)))
