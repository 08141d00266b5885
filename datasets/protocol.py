"""What a dataset must offer to the methods and the benchmark (:class:`Dataset`).

:class:`datasets.storage.BseDataset` (a dataset on disk) implements it; the test fakes in
``tests/fakes.py`` do too. An attribute a dataset may not have is ``None`` there: a dataset that
is not on disk has no ``path``, noise-free data have no dose, a dataset without dose-study data
has no ``dose_study_electrons_per_pixel``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Dataset(Protocol):
    """Samples with BSE stacks and labels, in train/val/test splits, plus named test cases."""

    #: where the dataset lives (None: in memory)
    path: Path | None
    #: sha256 that changes when, and only when, the data change
    hash: str
    #: the manifest (``dataset.json``): settings, physics, shapes ...
    meta: dict
    #: beam energies of every stack (E,)
    energies_keV: np.ndarray
    #: primaries per pixel the stacks were simulated with (None: noise-free data)
    simulated_electrons_per_pixel: int | None
    #: the dose the stacks are read at, <= simulated (None: noise-free data)
    read_electrons_per_pixel: int | None
    #: whether stacks are read below the simulated dose (thinned from the stored counts)
    thinned: bool
    #: the simulated dose of the dose study's own data (None: no such data)
    dose_study_electrons_per_pixel: int | None
    #: sample ids per split name (``train``, ``val``, ``test``)
    splits: dict[str, list[str]]

    def split_ids(self, name: str) -> list[str]:
        """The sample ids of split ``name``."""
        ...

    def sample(self, sid: str, stored: bool = False) -> dict:
        """One sample: dict(id, bse (E,H,W), label (D,H,W) ...) at the read dose (``stored``: as simulated)."""
        ...

    def split(self, name: str, read_electrons_per_pixel: float | None = None, seed: int = 0,
              stored: bool = False) -> torch.utils.data.Dataset:
        """Split ``name`` as a torch ``Dataset`` of {"bse", "label", "id"} dicts (optional shot noise)."""
        ...

    def arrays(self, split: str, read_electrons_per_pixel: float | None = None, seed: int = 0,
               stored: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(bse (N,E,H,W) float32, labels (N,D,H,W) uint8, ids)`` of a split."""
        ...

    def simulated_counts(self, split: str) -> np.ndarray:
        """Detected electrons (N,E,H,W) of a split at the simulated dose (for fresh thinning)."""
        ...

    def cases(self) -> list[str]:
        """Names of the named test cases stored with the dataset."""
        ...

    def case(self, name: str, stored: bool = False) -> list[dict]:
        """The samples of case ``name`` (dicts as :meth:`sample`)."""
        ...

    def dose_study(self) -> dict[str, list[dict]]:
        """The dose study's samples at its simulated dose, per source (``test``, case names)."""
        ...
