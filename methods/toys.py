"""Toy data for tests and smoke runs (not physics): random Cu boxes with a depth-weighted signal
(``tests/fakes.py`` wraps three toy splits into a fake dataset)."""

from __future__ import annotations

import numpy as np
import torch


class ToySplit(torch.utils.data.Dataset):
    """In-memory split of random Cu boxes with a toy depth-weighted BSE signal (tests, smoke runs).

    Not physics: image k is ``sum_z label[z] * exp(-z / r_k)`` normalised, with a probing range
    ``r_k`` growing with energy, so deeper Cu shows only at higher energies, as in real stacks.
    Same dict layout as ``datasets.storage`` splits; ``energies_keV`` attribute included.
    """

    def __init__(self, n: int, seed: int = 0, depth: int = 20, size: int = 20, n_energies: int = 20):
        rng = np.random.default_rng(seed)
        labels = np.zeros((n, depth, size, size), np.float32)
        shape = np.array([depth, size, size])
        for label in labels:
            for _ in range(rng.integers(1, 4)):
                extent = rng.integers(shape // 5, shape * 3 // 4, endpoint=True)
                lo = rng.integers(0, shape - extent, endpoint=True)
                hi = lo + extent
                label[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1.0
        self.energies_keV = np.linspace(0.5, 0.5 * n_energies, n_energies)
        ranges = 1.0 + depth * np.arange(1, n_energies + 1) / n_energies  # layers
        weights = np.exp(-np.arange(depth)[None, :] / ranges[:, None])  # (E, D)
        weights /= weights.sum(1, keepdims=True)
        self.bse = (0.1 + 0.4 * np.einsum("ed,ndhw->nehw", weights, labels)).astype(np.float32)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"bse": torch.from_numpy(self.bse[i]), "label": torch.from_numpy(self.labels[i]),
                "id": f"toy-{i:05d}"}
