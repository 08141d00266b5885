"""Training losses of the paper (section II.B): weighted BCE (equation 1) and the Lovász hinge.

Both take raw logits ``z`` (any shape, batch first) and binary labels ``y`` (1 = Cu, 0 = Si).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The paper's best WBCE weight (grid search, section III): lambda = 1/12.
PAPER_LAMBDA = 1.0 / 12.0


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, lam: float = PAPER_LAMBDA) -> torch.Tensor:
    """Equation 1: ``-mean[lam * y log h + (1 - lam) * (1 - y) log(1 - h)]``, ``h = sigmoid(z)``.

    As printed in the paper, ``lam`` multiplies the positive (Cu) term and ``1 - lam`` the
    negative (Si) term. Computed from logits with ``logsigmoid`` for numerical stability.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"WBCE weight lambda must lie in [0, 1], got {lam}")
    logits, labels = logits.float(), labels.float()
    positive = labels * F.logsigmoid(logits)
    negative = (1.0 - labels) * F.logsigmoid(-logits)
    return -(lam * positive + (1.0 - lam) * negative).mean()


def lovasz_grad(sorted_labels: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss for errors sorted in decreasing order.

    Entry i is ``J(first i+1 errors) - J(first i errors)`` with ``J = 1 - IoU`` of the mistake set.
    """
    n_positive = sorted_labels.sum()
    intersection = n_positive - sorted_labels.cumsum(0)
    union = n_positive + (1.0 - sorted_labels).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary Lovász hinge (Berman et al., CVPR 2018), averaged over the images of the batch.

    Per image: hinge errors ``e = relu(1 - z * (2y - 1))`` sorted decreasingly, dotted with the
    Lovász-extension gradient of the Jaccard loss; a convex surrogate of ``1 - IoU``.
    """
    logits = logits.float().flatten(1)
    labels = labels.float().flatten(1)
    losses = []
    for z, y in zip(logits, labels):
        errors = 1.0 - z * (2.0 * y - 1.0)
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(F.relu(errors_sorted), lovasz_grad(y[order])))
    return torch.stack(losses).mean()
