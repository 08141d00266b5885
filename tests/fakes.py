"""The test doubles of the suite, in one place.

- A fast, deterministic fake simulator module (``SIMULATOR_VERSION``, ``PhysicsConfig``,
  ``simulate_stacks``): this module is passed to the dataset builder's test seam
  (``build_dataset(simulator=fakes)`` or ``BSE_DATASET_SIMULATOR=fakes``).
- :class:`FakeDataset`: an in-memory dataset implementing :class:`datasets.protocol.Dataset`
  from arrays; :class:`ToyDataset`: one made of ``methods.toys.ToySplit`` s.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets.errors import UnknownNameError, look_up
from datasets.scene import COPPER
from datasets.stack import BseStack
from methods.toys import ToySplit

# -- fake simulator (the module-level API of the builder's test seam) ----------------------------

SIMULATOR_VERSION = "fake-1"


@dataclass(frozen=True)
class PhysicsConfig:
    elastic: str = "fake"
    stopping: str = "fake"

    def describe(self) -> dict:
        return {"elastic": self.elastic, "stopping": self.stopping, "model": "fake"}


def simulate_stacks(geometries, energies_keV, simulated_electrons_per_pixel, seed, device="cpu", physics=None,
                    cutoff_eV=50.0, progress=False, **_):
    """Binomial counts around a yield that grows with the Cu fraction of each column
    (``FAKE_SIMULATOR_SLEEP_S``: seconds to sleep first, for tests that interrupt a build)."""
    time.sleep(float(os.environ.get("FAKE_SIMULATOR_SLEEP_S", "0")))
    geometries = np.asarray(geometries)
    energies = np.asarray(energies_keV, dtype=np.float64)
    copper = (geometries == COPPER).mean(axis=1)  # (N, Y, X)
    weight = energies / energies.max()
    mean_yield = 0.1 + 0.4 * copper[:, None] * weight[None, :, None, None]
    counts = np.random.default_rng(seed).binomial(simulated_electrons_per_pixel, mean_yield)
    return [BseStack(bse=c / simulated_electrons_per_pixel, energies_keV=energies, counts=c,
                     simulated_electrons_per_pixel=simulated_electrons_per_pixel, cutoff_eV=cutoff_eV) for c in counts]


# -- fake datasets -------------------------------------------------------------------------------


class _ArraySplit(torch.utils.data.Dataset):
    """A split of a :class:`FakeDataset` as a torch ``Dataset`` of {"bse", "label", "id"} dicts."""

    def __init__(self, bse: np.ndarray, labels: np.ndarray, ids: list[str], energies_keV: np.ndarray):
        self.bse, self.labels, self.ids, self.energies_keV = bse, labels, ids, energies_keV

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"bse": torch.from_numpy(np.asarray(self.bse[i], np.float32)),
                "label": torch.from_numpy(np.asarray(self.labels[i], np.float32)), "id": self.ids[i]}


class FakeDataset:
    """An in-memory :class:`datasets.protocol.Dataset`: ``splits`` maps a split name to
    ``(bse (N,E,H,W), labels (N,D,H,W), ids)``, ``cases`` a case name to sample dicts
    (id, bse, label). Noise-free unless doses are given; not thinned; no dose-study data."""

    def __init__(self, splits: dict, cases: dict | None = None, energies_keV=(1.0, 3.0),
                 simulated_electrons_per_pixel: int | None = None, meta: dict | None = None,
                 hash: str = "fakehash0001"):
        self._arrays = {name: (np.asarray(b, np.float32), np.asarray(lab, np.uint8), list(ids))
                        for name, (b, lab, ids) in splits.items()}
        self._cases = dict(cases or {})
        self.path: Path | None = None
        self.hash = hash
        self.energies_keV = np.asarray(energies_keV, float)
        self.simulated_electrons_per_pixel = simulated_electrons_per_pixel
        self.read_electrons_per_pixel = simulated_electrons_per_pixel
        self.thinned = False
        self.dose_study_electrons_per_pixel: int | None = None
        self.splits = {name: ids for name, (_, _, ids) in self._arrays.items()}
        self.meta = meta if meta is not None else {
            "settings": {"energies_keV": list(self.energies_keV), "electrons_per_pixel": simulated_electrons_per_pixel,
                         "cutoff_eV": 50.0}}

    def split_ids(self, name: str) -> list[str]:
        return look_up("split", name, self.splits)

    def sample(self, sid: str, stored: bool = False) -> dict:
        for bse, labels, ids in self._arrays.values():
            if sid in ids:
                return {"id": sid, "bse": bse[ids.index(sid)], "label": labels[ids.index(sid)]}
        raise UnknownNameError(f"unknown sample id {sid!r}")

    def split(self, name: str, read_electrons_per_pixel=None, seed: int = 0, stored: bool = False):
        bse, labels, ids = self.arrays(name)
        return _ArraySplit(bse, labels, ids, self.energies_keV)

    def arrays(self, split: str, read_electrons_per_pixel=None, seed: int = 0, stored: bool = False):
        self.split_ids(split)
        bse, labels, ids = self._arrays[split]
        return bse.copy(), labels.copy(), list(ids)

    def simulated_counts(self, split: str) -> np.ndarray:
        if self.simulated_electrons_per_pixel is None:
            raise ValueError("noise-free fake data have no counts")
        return np.rint(self._arrays[split][0].astype(np.float64) * self.simulated_electrons_per_pixel).astype(np.int64)

    def cases(self) -> list[str]:
        return list(self._cases)

    def case(self, name: str, stored: bool = False) -> list[dict]:
        return look_up("case", name, self._cases)

    def dose_study(self) -> dict[str, list[dict]]:
        raise UnknownNameError("the fake dataset holds no dose-study data")


class ToyDataset(FakeDataset):
    """A :class:`FakeDataset` of three ``ToySplit`` s (train / val / test): noise-free toy data."""

    def __init__(self, n_train: int = 64, n_val: int = 16, n_test: int = 16, seed: int = 0):
        toys = {"train": ToySplit(n_train, seed), "val": ToySplit(n_val, seed + 1), "test": ToySplit(n_test, seed + 2)}
        super().__init__({name: (toy.bse, toy.labels, [toy[i]["id"] for i in range(len(toy))])
                          for name, toy in toys.items()}, energies_keV=toys["train"].energies_keV)
