"""Binarisation and threshold selection (methods/binarize.py)."""

import numpy as np
import pytest

from methods.binarize import (
    ORACLE_THRESHOLDS,
    THRESHOLD_RULES,
    binarize,
    choose_threshold,
    iou_per_sample,
    oracle_threshold,
)


def test_binarize_thresholds_inclusively_to_uint8():
    prob = np.array([0.0, 0.49, 0.5, 0.9, 1.0], dtype=np.float32)
    assert binarize(prob).tolist() == [0, 0, 1, 1, 1]
    assert binarize(prob, 0.9).tolist() == [0, 0, 0, 1, 1]
    assert binarize(prob).dtype == np.uint8


def test_binarize_rejects_bad_threshold_and_nan():
    with pytest.raises(ValueError, match="threshold"):
        binarize(np.zeros(3), 1.5)
    with pytest.raises(ValueError, match="NaN"):
        binarize(np.array([0.1, np.nan]))


def test_iou_per_sample_matches_hand_count_and_empty_convention():
    pred = np.zeros((2, 4), bool)
    gt = np.zeros((2, 4), bool)
    pred[0, :3] = True
    gt[0, 1:] = True  # intersection 2, union 4
    assert iou_per_sample(pred, gt).tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="shape"):
        iou_per_sample(pred, gt[:1])


def test_choose_threshold_finds_the_separating_value():
    rng = np.random.default_rng(0)
    labels = (rng.random((6, 4, 5, 5)) < 0.3).astype(np.uint8)
    # Cu voxels score 0.65-0.75, Si voxels 0.55-0.62: only thresholds in (0.62, 0.65] separate
    prob = np.where(labels == 1, rng.uniform(0.65, 0.75, labels.shape), rng.uniform(0.55, 0.62, labels.shape))
    assert choose_threshold(prob, labels) == pytest.approx(0.65)
    # a probability shifted down moves the chosen threshold with it
    assert choose_threshold(prob - 0.4, labels) == pytest.approx(0.25)


def test_choose_threshold_breaks_ties_towards_one_half_and_checks_input():
    labels = np.zeros((1, 2, 2, 2), np.uint8)
    labels[0, 0] = 1
    prob = labels.astype(float)  # every threshold in (0, 1] is perfect
    assert choose_threshold(prob, labels) == pytest.approx(0.5)
    assert choose_threshold(prob[0], labels[0]) == pytest.approx(0.5)  # single volume
    with pytest.raises(ValueError, match="shape"):
        choose_threshold(prob, labels[:, :1])
    with pytest.raises(ValueError, match="at least one"):
        choose_threshold(prob[:0], labels[:0])


def test_oracle_thresholds_are_the_papers_section_iii_values():
    assert THRESHOLD_RULES == ("fixed-0.5", "validation", "oracle")
    assert [oracle_threshold("nanocube", f"position{k}") for k in range(1, 5)] == [0.5, 0.7, 0.9, 0.9]
    assert oracle_threshold("nanowire", "radius10nm") == 0.5
    assert {ORACLE_THRESHOLDS["nanowire"][f"radius{r}nm"] for r in (2, 4, 6, 8)} == {0.8}
    with pytest.raises(KeyError, match="unknown oracle-threshold case .*; known: "):
        oracle_threshold("custom:foo", "x")
    with pytest.raises(KeyError, match="position1"):
        oracle_threshold("nanocube", "position9")


def test_oracle_sample_names_match_the_case_builders():
    from datasets import cases
    for case, thresholds in ORACLE_THRESHOLDS.items():
        assert sorted(s.name for s in cases.get_case(case)) == sorted(thresholds)
