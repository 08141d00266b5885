"""Train/val/test splits of a dataset: how samples are split, and a split as a torch ``Dataset``
(with optional shot noise at a read dose)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from datasets.dataset_format import SPLIT_NAMES, DatasetError
from datasets.protocol import Dataset


def make_splits(ids: Sequence[str], test_fraction: float, val_fraction: float, seed: int) -> dict:
    """Random train/val/test split of ``ids``, a pure function of (ids, fractions, seed).

    ``test_fraction`` of all samples is held out for testing (the paper's 2 %), then
    ``val_fraction`` of the rest is used for validation. A non-zero fraction gets at least one
    sample when there are at least three samples. Each list is sorted.
    """
    ids = list(ids)
    n = len(ids)
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(0x5B117,)))
    order = rng.permutation(n)

    def share(fraction: float, total: int) -> int:
        count = int(round(fraction * total))
        return max(count, 1) if fraction > 0 and n >= 3 else count

    n_test = share(test_fraction, n)
    n_val = min(share(val_fraction, n - n_test), n - n_test - 1) if n - n_test > 1 else 0
    test = sorted(ids[i] for i in order[:n_test])
    val = sorted(ids[i] for i in order[n_test : n_test + n_val])
    train = sorted(ids[i] for i in order[n_test + n_val :])
    return {"seed": int(seed), "train": train, "val": val, "test": test}


def check_splits(splits: dict, ids: Sequence[str], where="splits") -> None:
    """Raise ``DatasetError`` unless ``splits`` has disjoint train/val/test lists of known ids."""
    known = set(ids)
    seen: dict[str, str] = {}
    for name in SPLIT_NAMES:
        if name not in splits or not isinstance(splits[name], list):
            raise DatasetError(f"{where} has no list {name!r}")
        for item in splits[name]:
            if item not in known:
                raise DatasetError(f"{where}: {name} holds unknown sample id {item!r}")
            if item in seen:
                raise DatasetError(f"{where}: sample {item!r} is in both {seen[item]} and {name}")
            seen[item] = name


def _noise_seed(seed: int, sample_index: int) -> int:
    sequence = np.random.SeedSequence(entropy=int(seed), spawn_key=(0x40153, int(sample_index)))
    return int(sequence.generate_state(1, np.uint64)[0] >> 1)


def check_read_dose(read_electrons_per_pixel) -> None:
    """Raise ``ValueError`` unless the shot-noise dose is a positive finite number (or None)."""
    if read_electrons_per_pixel is None:
        return
    dose = float(read_electrons_per_pixel)
    if not np.isfinite(dose) or dose <= 0:
        raise ValueError("read_electrons_per_pixel must be a positive number of electrons per pixel, "
                         f"got {read_electrons_per_pixel!r}")


def apply_shot_noise(bse: torch.Tensor, read_electrons_per_pixel: float, seed: int, sample_index: int) -> torch.Tensor:
    """Shot noise at a beam dose of ``read_electrons_per_pixel`` (``d``): ``Poisson(d * bse) / d``.

    The Poisson draw uses a ``torch.Generator`` seeded by (``seed``, ``sample_index``).
    """
    check_read_dose(read_electrons_per_pixel)
    dose = float(read_electrons_per_pixel)
    generator = torch.Generator().manual_seed(_noise_seed(seed, sample_index))
    rate = bse.to(torch.float64).clamp_min(0) * dose
    return (torch.poisson(rate, generator=generator) / dose).to(torch.float32)


def split_energies(split) -> np.ndarray | None:
    """The beam energies a split records (a ``SplitDataset``'s or a toy split's ``energies_keV``);
    None for a split that records none (e.g. a list of dicts)."""
    energies = getattr(split, "energies_keV", None)
    return None if energies is None else np.asarray(energies, dtype=float)


class SplitDataset(torch.utils.data.Dataset):
    """Samples of one split as torch tensors (see ``BseDataset.split``); ``noise_keys``: the key
    of each sample's shot-noise draw (its sample index)."""

    def __init__(self, dataset: Dataset, ids: list[str], noise_keys: Mapping[str, int],
                 read_electrons_per_pixel: float | None = None, seed: int = 0, stored: bool = False):
        check_read_dose(read_electrons_per_pixel)
        self.dataset = dataset
        #: the beam energies of the stacks (the dataset's)
        self.energies_keV = dataset.energies_keV
        self.ids = list(ids)
        self.noise_keys = noise_keys
        self.read_electrons_per_pixel = read_electrons_per_pixel
        self.seed = int(seed)
        self.stored = bool(stored)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        sid = self.ids[index]
        sample = self.dataset.sample(sid, stored=self.stored)
        bse = torch.from_numpy(np.array(sample["bse"], dtype=np.float32))
        if self.read_electrons_per_pixel is not None:
            bse = apply_shot_noise(bse, self.read_electrons_per_pixel, self.seed, self.noise_keys[sid])
        label = torch.from_numpy(np.array(sample["label"], dtype=np.float32))
        return {"bse": bse, "label": label, "id": sid}
