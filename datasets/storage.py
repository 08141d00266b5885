"""A dataset on disk and its loader (``open_dataset``); the format is in :mod:`datasets.dataset_format`.

Files are verified when read: sizes at ``open_dataset``, the sha256 of a shard the first time it
is loaded (``verify=True``), so a truncated or corrupt file raises ``DatasetError`` naming it.

The dose: every stack is simulated with ``simulated_electrons_per_pixel`` primaries per pixel and
read at ``read_electrons_per_pixel`` (the preset's read dose, else the simulated one): below the
simulated dose each stack is an exact, seeded thinning of its stored counts (``datasets.dose``).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from datasets.dataset_files import DatasetFiles, read_manifest
from datasets.dataset_format import (  # noqa: F401 - the format's names, re-exported for readers
    CASES_NAME,
    DOSE_STUDY_PREFIX,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SHARDS_DIR,
    SPLIT_NAMES,
    SPLITS_NAME,
    DatasetError,
    SampleArrays,
    checksum_path,
    dataset_hash,
    read_checksum,
    sample_id,
    sha256_file,
    shard_name,
    verify_file,
    write_cases,
    write_h5_atomically,
    write_shard,
)
from datasets.dose import DoseReader
from datasets.errors import UnknownNameError, look_up
from datasets.presets import settings_doses
from datasets.splits import SplitDataset, apply_shot_noise, check_splits, make_splits  # noqa: F401

#: Datasets up to this many bytes of arrays are kept in memory once loaded.
DEFAULT_CACHE_BYTES = 4 * 2**30


def open_dataset(path, verify: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES) -> BseDataset:
    """Open a dataset directory written by ``build_dataset``.

    Raises ``FileNotFoundError`` when the directory or its manifest is missing and
    ``DatasetError`` when the build is incomplete, a file is missing or truncated, or (when a file
    is first read with ``verify=True``) its sha256 does not match the manifest.
    """
    return BseDataset(path, verify=verify, cache_bytes=cache_bytes)


class BseDataset:
    """A dataset on disk: random samples in shards, their splits, and the named cases, read at
    the dataset's read dose (``stored=True``: the stacks as simulated)."""

    def __init__(self, path, verify: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.path = Path(path)
        self.meta = read_manifest(self.path)
        self.files = DatasetFiles(self.path, self.meta, verify, cache_bytes)
        self.hash: str = self.meta["dataset_hash"]
        self.ids: list[str] = self.files.ids
        self.splits: dict[str, list[str]] = self.files.splits
        settings = self.meta["settings"]
        self.energies_keV = np.asarray(settings["energies_keV"], dtype=np.float64)
        simulated, read = settings_doses(settings)
        try:
            self.dose_reader = DoseReader(simulated, read, seed=int(settings["seed"]))
        except ValueError as err:
            raise DatasetError(f"{self.path / MANIFEST_NAME}: {err}") from err
        #: primaries per pixel the stacks were simulated (and stored) with
        self.simulated_electrons_per_pixel: int = simulated
        #: the dose the dataset's stacks are read at (<= simulated)
        self.read_electrons_per_pixel: int = read
        #: whether stacks are read below the simulated dose (thinned from the stored counts)
        self.thinned: bool = self.dose_reader.thinned
        study = (self.meta["cases"] or {}).get("dose_study")
        #: the simulated dose of the dose study's own data (None: the dataset has none)
        self.dose_study_electrons_per_pixel: int | None = int(study["electrons_per_pixel"]) if study else None

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"BseDataset({str(self.path)!r}, preset={self.meta.get('preset')!r}, {sizes}, hash={self.hash[:12]})"

    def verify(self) -> None:
        """Check the sha256 of every file now (normally each is checked when first read)."""
        self.files.verify()

    def sample(self, sid: str, stored: bool = False) -> dict:
        """One random sample: dict(id, bse (E,H,W) float32, label (D,H,W) uint8, geometry, params, seed);
        ``bse`` at the read dose (``stored=True``: as stored)."""
        arrays = self.files.sample_arrays(sid)
        return {
            "id": sid,
            "bse": arrays["bse"] if stored else self.dose_reader.read(arrays["bse"], arrays["counts"], (self.files.index[sid],)),
            "label": arrays["label"],
            "geometry": arrays["geometry"],
            "params": arrays["params"],
            "seed": None if arrays["seed"] is None else int(arrays["seed"]),
        }

    def simulated_counts(self, split: str) -> np.ndarray:
        """Detected electrons (N, E, H, W) int64 of a split at the simulated dose (for fresh thinning)."""
        counts = []
        for sid in self.split_ids(split):
            arrays = self.files.sample_arrays(sid)
            counts.append(self.dose_reader.simulated_counts(arrays["bse"], arrays["counts"]))
        if not counts:
            return np.zeros((0, len(self.energies_keV), *self.meta["image_shape"]), np.int64)
        return np.stack(counts).astype(np.int64)

    def split_ids(self, name: str) -> list[str]:
        return look_up("split", name, self.splits)

    def split(self, name: str, read_electrons_per_pixel: float | None = None, seed: int = 0,
              stored: bool = False) -> SplitDataset:
        """A torch ``Dataset`` over split ``name`` (``train``/``val``/``test``).

        Items are dicts ``{"bse": FloatTensor(E,H,W), "label": FloatTensor(D,H,W), "id": str}``.
        With ``read_electrons_per_pixel`` (``d``) each image gets shot noise ``Poisson(d * yield) / d``,
        drawn from a generator seeded by (``seed``, sample index): the same seed gives the same
        noisy images; use e.g. ``seed=epoch`` for fresh noise. Images are at the dataset's read
        dose (``stored=True``: as stored).
        """
        return SplitDataset(self, self.split_ids(name), self.files.index,
                            read_electrons_per_pixel=read_electrons_per_pixel, seed=seed, stored=stored)

    def arrays(self, split: str, read_electrons_per_pixel: float | None = None, seed: int = 0,
               stored: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(bse (N,E,H,W) float32, labels (N,D,H,W) uint8, ids)`` of a split, optional noise as ``split``."""
        ids = self.split_ids(split)
        items = [self.sample(sid, stored=stored) for sid in ids]
        if items:
            bse = np.stack([item["bse"] for item in items]).astype(np.float32)
            labels = np.stack([item["label"] for item in items]).astype(np.uint8)
        else:
            bse = np.zeros((0, len(self.energies_keV), *self.meta["image_shape"]), np.float32)
            labels = np.zeros((0, *self.meta["label_shape"]), np.uint8)
        if read_electrons_per_pixel is not None:
            for i, sid in enumerate(ids):
                bse[i] = apply_shot_noise(torch.from_numpy(bse[i]), read_electrons_per_pixel, seed,
                                          self.files.index[sid]).numpy()
        return bse, labels, list(ids)

    def cases(self) -> list[str]:
        """Names of the named test cases stored with the dataset."""
        return list(self.meta["cases"]["names"]) if self.meta["cases"] else []

    def case(self, name: str, stored: bool = False) -> list[dict]:
        """The samples of case ``name``: dicts(id, bse (E,H,W), label (D,H,W) uint8, geometry, params),
        ``bse`` at the read dose (``stored=True``: as stored)."""
        look_up("case", name, dict.fromkeys(self.cases()))
        samples = self.files.case_samples(name)
        if stored or not self.thinned:
            return samples
        case_key = zlib.crc32(name.encode())
        return [{**s, "bse": self.dose_reader.read(s["bse"], s["counts"], (case_key, i))} for i, s in enumerate(samples)]

    def dose_study(self) -> dict[str, list[dict]]:
        """The dose study's samples at its simulated dose, per source (``test``: the first test
        geometries; the named cases): {source: [dict(id, bse, label, geometry, params, counts)]}."""
        if self.dose_study_electrons_per_pixel is None:
            raise UnknownNameError(f"{self.path} holds no dose-study data (dataset preset field "
                                   "dose_study_electrons_per_pixel)")
        groups = self.meta["cases"]["dose_study"]["groups"]
        return {group: self.files.case_samples(DOSE_STUDY_PREFIX + group) for group in groups}
