"""benchmark.metrics against hand-computed values."""

import math

import numpy as np
import pytest

from benchmark import metrics


def volume(shape=(4, 3, 3), cu=()):
    v = np.zeros(shape, np.uint8)
    for index in cu:
        v[index] = 1
    return v


def test_perfect_prediction_scores_one():
    gt = volume(cu=[(0, 0, 0), (1, 1, 1), (3, 2, 2)])
    scores = metrics.score_volume(gt.copy(), gt)
    assert scores["iou"] == 1.0
    assert scores["mre"] == 0.0
    assert scores["precision"] == 1.0
    assert scores["recall"] == 1.0
    assert np.allclose(scores["per_depth_iou"], [1, 1, math.nan, 1], equal_nan=True)


def test_empty_prediction_of_nonempty_truth():
    gt = volume(cu=[(0, 0, 0), (0, 0, 1)])
    pred = volume()
    assert metrics.iou(pred, gt) == 0.0
    assert metrics.mean_relative_error(pred, gt) == 1.0  # |0 - 2| / 2
    assert math.isnan(metrics.precision(pred, gt))  # 0/0 with Cu to find: undefined
    assert metrics.recall(pred, gt) == 0.0


def test_empty_truth():
    empty = volume()
    # both empty: perfect (documented convention)
    assert metrics.iou(empty, empty) == 1.0
    assert metrics.precision(empty, empty) == 1.0
    assert metrics.recall(empty, empty) == 1.0
    assert math.isnan(metrics.mean_relative_error(empty, empty))  # V_gt = 0 -> NaN
    # Cu predicted where there is none
    pred = volume(cu=[(2, 1, 1)])
    assert metrics.iou(pred, empty) == 0.0
    assert metrics.precision(pred, empty) == 0.0
    assert math.isnan(metrics.recall(pred, empty))
    assert math.isnan(metrics.mean_relative_error(pred, empty))


def test_hand_example():
    # gt: 4 Cu voxels in layer 0, 2 in layer 1; pred: 3 of layer 0's plus 1 wrong voxel in
    # layer 2 and 1 right in layer 1.
    gt = volume(cu=[(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 2, 2), (1, 2, 1)])
    pred = volume(cu=[(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 2, 2), (2, 0, 0)])
    assert metrics.confusion_counts(pred, gt) == (4, 1, 2)
    assert metrics.iou(pred, gt) == pytest.approx(4 / 7)
    assert metrics.precision(pred, gt) == pytest.approx(4 / 5)
    assert metrics.recall(pred, gt) == pytest.approx(4 / 6)
    assert metrics.mean_relative_error(pred, gt) == pytest.approx(abs(5 - 6) / 6)
    assert np.allclose(metrics.per_depth_iou(pred, gt), [3 / 4, 1 / 2, 0.0, math.nan], equal_nan=True)


def test_mre_is_a_volume_error_not_a_voxel_error():
    gt = volume(cu=[(0, 0, 0), (0, 0, 1)])
    shifted = volume(cu=[(3, 2, 2), (3, 2, 1)])  # same volume, all voxels wrong
    assert metrics.mean_relative_error(shifted, gt) == 0.0
    assert metrics.iou(shifted, gt) == 0.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="shape"):
        metrics.iou(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.iou(np.full((2, 2, 2), np.nan), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="D, H, W"):
        metrics.per_depth_iou(np.zeros((2, 2)), np.zeros((2, 2)))


def test_per_depth_json_round_trip():
    import json

    text = metrics.per_depth_json([0.5, math.nan, 1.0])
    assert np.allclose(json.loads(text), [0.5, math.nan, 1.0], equal_nan=True)


def test_bootstrap_interval_sanity():
    rng = np.random.default_rng(1)
    values = rng.uniform(0.6, 1.0, size=200)
    a = metrics.bootstrap_mean_interval(values, seed=3)
    b = metrics.bootstrap_mean_interval(values, seed=3)
    assert a == b  # seeded: reproducible
    assert a.low < a.mean < a.high
    assert a.mean == pytest.approx(values.mean())
    # the 95% interval of a mean of 200 uniforms has half-width about 1.96 * sd / sqrt(n)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert (a.high - a.low) / 2 == pytest.approx(half_width, rel=0.2)
    narrower = metrics.bootstrap_mean_interval(values, confidence=0.5, seed=3)
    assert a.low < narrower.low < narrower.high < a.high


def test_bootstrap_edge_cases():
    constant = metrics.bootstrap_mean_interval([0.8, 0.8, 0.8])
    assert (constant.mean, constant.low, constant.high) == pytest.approx((0.8, 0.8, 0.8))
    with_nan = metrics.bootstrap_mean_interval([1.0, math.nan, 0.0])
    assert with_nan.n == 2 and with_nan.mean == 0.5
    single = metrics.bootstrap_mean_interval([0.3])
    assert single.mean == 0.3 and math.isnan(single.low) and math.isnan(single.high)
    assert math.isnan(metrics.bootstrap_mean_interval([]).mean)
    with pytest.raises(ValueError, match="confidence"):
        metrics.bootstrap_mean_interval([1.0, 2.0], confidence=95)


def test_time_inference_counts_calls_and_divides_by_batch():
    calls = []

    def reconstruct(batch):
        calls.append(len(batch))

    timing = metrics.time_inference(reconstruct, np.zeros((4, 2, 3, 3)), repeats=3, warmup=2)
    assert calls == [4] * 5
    assert timing.repeats == 3 and timing.warmup == 2 and timing.batch_size == 4
    assert len(timing.all_seconds) == 3
    assert timing.seconds_per_volume == pytest.approx(sorted(timing.all_seconds)[1] / 4)
    with pytest.raises(ValueError, match="repeats"):
        metrics.time_inference(reconstruct, np.zeros((1, 1)), repeats=0)
