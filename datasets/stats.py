"""Statistics of per-sample scores, the one implementation every layer uses: the mean with a
seeded percentile-bootstrap interval (mIoU and its 95 % interval), and the paired bootstrap of two
methods' per-sample differences on the same samples ("A beats B by x [lo, hi]").

Here, in the lowest layer, so that the harness (``benchmark.metrics``, which re-exports it) and
the report (``reports``) compute the same numbers from the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MeanInterval:
    """A mean with its bootstrap confidence interval over ``n`` finite values."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def as_tuple(self) -> tuple[float, float, float, int]:
        """(mean, low, high, n), the report tables' cells."""
        return self.mean, self.low, self.high, self.n

    def as_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n,
                "confidence": self.confidence}


def bootstrap_mean_interval(values, confidence: float = 0.95, n_resamples: int = 2000,
                            seed: int = 0) -> MeanInterval:
    """Mean of ``values`` (e.g. per-sample IoU -> mIoU) and its percentile bootstrap interval.

    NaN values are dropped first. Resampling uses ``numpy.random.default_rng(seed)``, so the
    interval is reproducible. With fewer than two values the interval is undefined (NaN bounds).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    arr = np.asarray(values, dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return MeanInterval(math.nan, math.nan, math.nan, 0, confidence)
    mean = float(arr.mean())
    if arr.size < 2:
        return MeanInterval(mean, math.nan, math.nan, int(arr.size), confidence)
    rng = np.random.default_rng(seed)
    resampled_means = arr[rng.integers(0, arr.size, size=(n_resamples, arr.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(resampled_means, [alpha, 1.0 - alpha])
    return MeanInterval(mean, float(low), float(high), int(arr.size), confidence)


def paired_difference_interval(a, b, confidence: float = 0.95, n_resamples: int = 2000,
                               seed: int = 0) -> MeanInterval:
    """Mean per-sample difference ``a - b`` of two methods scored on the same samples, with the
    percentile bootstrap interval of that mean (the samples resampled jointly): "A beats B by x
    [lo, hi]"; an interval that excludes 0 separates the two."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same samples, got {a.size} and {b.size} values")
    return bootstrap_mean_interval(a - b, confidence, n_resamples, seed)
