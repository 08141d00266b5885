"""The dose study: binomial thinning gives the right mean and variance, the ``dose`` case expands
to the reachable doses, and the paired and class-mean statistics are what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark import metrics
from datasets.dose import DOSE_LEVELS, dose_levels, thin_counts, thin_yields


def test_thinning_has_the_binomial_mean_and_variance():
    rng = np.random.default_rng(0)
    counts = np.full(200_000, 40)
    thinned = thin_counts(counts, 0.25, rng)  # binomial: each primary kept with p
    assert thinned.mean() == pytest.approx(10.0, abs=0.03)  # k p
    assert thinned.var() == pytest.approx(40 * 0.25 * 0.75, rel=0.02)  # k p (1 - p)
    assert thin_counts(counts[:5], 1.0, rng).tolist() == [40] * 5
    with pytest.raises(ValueError, match="non-negative integers"):
        thin_counts(np.array([1.5]), 0.5, rng)


def test_thinned_yields_are_a_lower_dose_of_the_same_image():
    """Thinning 1000 e-/px yields to 50 e-/px: the mean is kept, the variance is that of 50 e-/px."""
    rng = np.random.default_rng(1)
    truth = 0.2
    high = rng.binomial(1000, truth, size=100_000) / 1000
    low = thin_yields(high, 1000, 50, rng)
    assert low.mean() == pytest.approx(truth, abs=2e-3)
    assert low.var() == pytest.approx(truth * (1 - truth) / 50, rel=0.03)
    assert np.allclose(low * 50, np.rint(low * 50), atol=1e-4)  # whole electrons at the new dose
    with pytest.raises(ValueError, match="can only thin"):
        thin_yields(high, 1000, 2000, rng)


def test_dose_levels_reachable_from_the_stored_dose():
    assert dose_levels(60) == [10, 25, 50, 60]
    assert dose_levels(1000) == [10, 25, 50, 100, 300, 1000]
    assert DOSE_LEVELS[-1] == 1000


def test_paired_difference_interval_separates_only_a_real_difference():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.9, 100)
    better = metrics.paired_difference_interval(base + 0.05 + rng.normal(0, 0.02, 100), base)
    assert better.low > 0 and better.mean == pytest.approx(0.05, abs=0.01)
    same = metrics.paired_difference_interval(base + rng.normal(0, 0.02, 100), base)
    assert same.low < 0 < same.high
    with pytest.raises(ValueError, match="same samples"):
        metrics.paired_difference_interval([1, 2], [1])


def test_class_mean_iou_averages_the_cu_and_si_classes():
    gt = np.zeros((4, 4, 4), bool)
    gt[:2] = True  # half Cu
    pred = np.zeros_like(gt)
    pred[:1] = True  # half of the Cu found, no false Cu
    assert metrics.iou(pred, gt) == pytest.approx(0.5)
    assert metrics.class_mean_iou(pred, gt) == pytest.approx(0.5 * (0.5 + 32 / 48))
