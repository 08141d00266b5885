"""Weighted BCE (paper eq. 1) and the Lovász hinge against brute-force references."""

import itertools
import math

import numpy as np
import pytest
import torch

from methods.losses import PAPER_LAMBDA, lovasz_hinge, weighted_bce


def jaccard_loss(mistakes: np.ndarray, labels: np.ndarray) -> float:
    """1 - IoU of the prediction that gets exactly ``mistakes`` wrong (brute force on sets)."""
    pred = labels.astype(bool) ^ mistakes.astype(bool)
    gt = labels.astype(bool)
    union = (pred | gt).sum()
    return 0.0 if union == 0 else 1.0 - (pred & gt).sum() / union


def lovasz_extension_brute(errors: np.ndarray, labels: np.ndarray) -> float:
    """Lovász extension of the Jaccard loss at ``errors >= 0`` as the integral over thresholds.

    f(e) = integral_0^inf J({i : e_i >= t}) dt = sum_k (v_k - v_{k+1}) J({e >= v_k}) for the sorted
    distinct values v_1 > v_2 > ... > 0 (v_{K+1} = 0): independent of the sort-and-dot formula.
    """
    values = sorted({float(v) for v in errors if v > 0}, reverse=True) + [0.0]
    return sum(
        (hi - lo) * jaccard_loss(errors >= hi, labels) for hi, lo in zip(values[:-1], values[1:])
    )


def test_wbce_matches_equation_1():
    logits = torch.tensor([[-2.0, 0.5, 3.0, -0.1]])
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    lam = 0.3
    h = torch.sigmoid(logits)
    expected = -(lam * labels * torch.log(h) + (1 - lam) * (1 - labels) * torch.log(1 - h)).mean()
    assert torch.allclose(weighted_bce(logits, labels, lam), expected, atol=1e-6)
    assert PAPER_LAMBDA == pytest.approx(1 / 12)
    # lambda weights the positive (Cu) term: lambda = 1 ignores all negatives
    only_pos = weighted_bce(logits, labels, 1.0)
    assert torch.allclose(only_pos, -(labels * torch.log(h)).mean(), atol=1e-6)
    with pytest.raises(ValueError, match="lambda"):
        weighted_bce(logits, labels, 1.5)


def test_wbce_stable_for_large_logits():
    loss = weighted_bce(torch.tensor([[200.0, -200.0]]), torch.tensor([[0.0, 1.0]]), 0.5)
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(0.5 * 200.0)


@pytest.mark.parametrize("seed", range(6))
def test_lovasz_hinge_equals_brute_force_extension(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(9) < 0.4).astype(np.float32)
    logits = rng.normal(0, 1.5, 9).astype(np.float32)
    errors = np.maximum(1 - logits * (2 * labels - 1), 0)
    got = lovasz_hinge(torch.from_numpy(logits)[None], torch.from_numpy(labels)[None]).item()
    assert got == pytest.approx(lovasz_extension_brute(errors, labels), abs=1e-5)


def test_lovasz_hinge_at_binary_errors_is_one_minus_iou():
    """Logits with margin exactly 1 where right and 0 where wrong: hinge errors are the 0/1
    mistake indicator and the extension equals the set function 1 - IoU (all masks of 5 voxels)."""
    labels = np.array([1, 0, 1, 1, 0], np.float32)
    signs = 2 * labels - 1
    for mistakes in itertools.product([0, 1], repeat=5):
        m = np.array(mistakes, np.float32)
        logits = signs * (1 - m)
        got = lovasz_hinge(torch.from_numpy(logits)[None], torch.from_numpy(labels)[None]).item()
        assert got == pytest.approx(jaccard_loss(m, labels), abs=1e-6)


def test_lovasz_hinge_properties():
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0, 1.0]])
    confident = (2 * labels - 1) * 5.0  # right with a margin >= 1: zero loss
    assert lovasz_hinge(confident, labels).item() == 0.0
    # positively homogeneous in the hinge errors, and averaged per image over the batch
    logits = torch.randn(1, 6, generator=torch.Generator().manual_seed(0))
    doubled_errors = 2 * (1 - logits * (2 * labels - 1))
    twice = lovasz_hinge((1 - doubled_errors) * (2 * labels - 1), labels)
    assert twice.item() == pytest.approx(2 * lovasz_hinge(logits, labels).item(), rel=1e-5)
    batch = lovasz_hinge(torch.cat([logits, confident]), torch.cat([labels, labels]))
    assert batch.item() == pytest.approx(lovasz_hinge(logits, labels).item() / 2, rel=1e-6)
    # no Cu at all: the loss is the largest hinge error (any false positive is a full miss)
    empty = torch.zeros(1, 4)
    z = torch.tensor([[-2.0, 0.5, -1.0, 0.0]])
    assert lovasz_hinge(z, empty).item() == pytest.approx(1.5)
