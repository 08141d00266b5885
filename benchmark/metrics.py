"""Scores of a binary Cu reconstruction against the ground truth, and inference timing.

All volumes are (D, H, W) arrays over the Si block, Cu = 1 (or True), anything else = Si.

Conventions for empty volumes (a ratio 0/0):

- ``iou``, ``precision``, ``recall``: when the prediction and the ground truth are both empty
  the answer is perfect and the score is 1.0; a ratio that is 0/0 otherwise (precision with no
  predicted Cu, recall with no true Cu) is NaN, i.e. undefined, and left out of averages.
- IoU's denominator is zero only when both are empty, so IoU is always defined.
- ``mean_relative_error`` is NaN whenever the ground truth holds no Cu (V_gt = 0).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from datasets.stats import MeanInterval, bootstrap_mean_interval, paired_difference_interval  # noqa: F401 (re-exported)


def _as_masks(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    for name, arr in (("prediction", pred), ("ground truth", gt)):
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN; pass a binary (0/1) volume")
    return pred.astype(bool), gt.astype(bool)


def confusion_counts(pred, gt) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of Cu voxels."""
    pred, gt = _as_masks(pred, gt)
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    return tp, fp, fn


def _ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    if denominator == 0:
        return 1.0 if both_empty else math.nan
    return numerator / denominator


def iou(pred, gt) -> float:
    """Intersection over union of the Cu voxels, paper equation 2: |GT ∩ Pred| / |GT ∪ Pred|.

    Both empty -> 1.0 (nothing to find, nothing predicted).
    """
    tp, fp, fn = confusion_counts(pred, gt)
    return _ratio(tp, tp + fp + fn, both_empty=True)


def class_mean_iou(pred, gt) -> float:
    """Mean of the Cu IoU and the Si IoU (the block's other class) of one volume: the class-mean
    IoU of a two-channel one-hot segmentation, which the paper's "mIoU" may denote. Always at
    least as high as the Cu IoU when Si dominates the block."""
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    return 0.5 * (iou(pred, gt) + iou(~pred, ~gt))


def precision(pred, gt) -> float:
    """TP / (TP + FP): the fraction of predicted Cu voxels that are Cu.

    1.0 when both volumes are empty; NaN when nothing is predicted but the ground truth has Cu.
    """
    tp, fp, fn = confusion_counts(pred, gt)
    return _ratio(tp, tp + fp, both_empty=fn == 0)


def recall(pred, gt) -> float:
    """TP / (TP + FN): the fraction of true Cu voxels found.

    1.0 when both volumes are empty; NaN when the ground truth has no Cu but Cu is predicted.
    """
    tp, fp, fn = confusion_counts(pred, gt)
    return _ratio(tp, tp + fn, both_empty=fp == 0)


def mean_relative_error(pred, gt) -> float:
    """Relative error of the reconstructed Cu volume, the MRE of the paper's Table 1.

    Defined here (the paper does not spell it out) as ``|V_pred - V_gt| / V_gt`` where ``V`` is
    the number of Cu voxels (1 nm^3 each) in the volume: a per-sample volume error, not a
    per-voxel one. Averaged over the samples of a split it is the *mean* relative error.
    NaN when the ground truth holds no Cu (V_gt = 0), whatever the prediction.
    """
    pred, gt = _as_masks(pred, gt)
    v_gt = int(np.count_nonzero(gt))
    if v_gt == 0:
        return math.nan
    return abs(int(np.count_nonzero(pred)) - v_gt) / v_gt


def per_depth_iou(pred, gt) -> list[float]:
    """IoU of each z layer (axis 0, 1 nm per layer from the top of the block): depth resolution.

    NaN for a layer that is empty in both prediction and ground truth (nothing to score there).
    """
    pred, gt = _as_masks(pred, gt)
    if pred.ndim != 3:
        raise ValueError(f"per-depth IoU needs (D, H, W) volumes, got shape {pred.shape}")
    inter = np.count_nonzero(pred & gt, axis=(1, 2))
    union = np.count_nonzero(pred | gt, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        layer = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return [float(v) for v in layer]


def score_volume(pred, gt) -> dict:
    """All per-sample scores of one binary volume: iou, mre, precision, recall, per_depth_iou."""
    return {
        "iou": iou(pred, gt),
        "class_mean_iou": class_mean_iou(pred, gt),
        "mre": mean_relative_error(pred, gt),
        "precision": precision(pred, gt),
        "recall": recall(pred, gt),
        "per_depth_iou": per_depth_iou(pred, gt),
    }


def per_depth_json(values: list[float]) -> str:
    """The per-depth IoU list as a JSON string (NaN written as ``NaN``, read back by ``json.loads``)."""
    return json.dumps([float(v) for v in values])


@dataclass(frozen=True)
class Timing:
    """Inference time of a method: median seconds per volume over ``repeats`` timed calls."""

    seconds_per_volume: float
    repeats: int
    warmup: int
    batch_size: int
    device: str
    all_seconds: tuple[float, ...]


def _synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(torch.device(device))


def time_inference(reconstruct: Callable[[np.ndarray], object], batch: np.ndarray, device: str = "cpu",
                   repeats: int = 5, warmup: int = 1) -> Timing:
    """Time ``reconstruct(batch)`` only (no data loading, no scoring).

    Runs ``warmup`` untimed calls, then ``repeats`` timed ones; on a CUDA device every call is
    bracketed by ``torch.cuda.synchronize`` so queued kernels are counted. Returns the median
    call time divided by the batch size.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    batch_size = int(np.shape(batch)[0])
    for _ in range(warmup):
        reconstruct(batch)
    _synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        reconstruct(batch)
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
    return Timing(
        seconds_per_volume=statistics.median(seconds) / batch_size,
        repeats=repeats,
        warmup=warmup,
        batch_size=batch_size,
        device=str(device),
        all_seconds=tuple(seconds),
    )
