"""On-disk format of a simulated dataset, and its loader (``open_dataset``).

A dataset is a directory::

    DIR/dataset.json            manifest (written last; ``"complete": false`` while building)
    DIR/splits.json             {"seed", "train": [ids], "val": [ids], "test": [ids]}, written once
    DIR/shards/shard-00000.h5   samples 0 .. shard_size-1, one HDF5 file per shard
    DIR/shards/shard-00000.h5.sha256   checksum of the shard, written before the shard appears
    DIR/cases.h5                the named test cases simulated with the same settings

A shard file holds N samples (N = ``shard_size``, fewer in the last shard):

- ``bse``       (N, E, H, W) float32: BSE yield per energy (fraction of primaries detected),
                chunked one sample per chunk, gzip + shuffle;
- ``counts``    (N, E, H, W) uint32: detected electrons (optional; present for simulated data);
- ``label``     (N, D, H, W) uint8: Cu mask over the Si block (``block_labels``, D = 20);
- ``geometry``  (N, Z, Y, X) uint8: full scene geometry (26, 20, 20), ids 0 vacuum/1 Si/2 Cu;
- ``params``    (N,) JSON strings: the random generator's parameters of each geometry;
- ``seed``      (N,) uint64: the geometry seed of each sample (``random_geometry(seed)``);
- ``sample_id`` (N,) strings, e.g. ``"g000123"`` for sample index 123.

Attributes: ``format``, ``format_version``, ``shard_index``, ``first_index``,
``simulation_seed``, ``energies_keV``, ``electrons_per_pixel``, ``cutoff_eV``.
``cases.h5`` has one group per case (``nanocube``, ``nanowire``...) with the same datasets
(``sample_id`` = the case sample name, e.g. ``position1``; no ``seed``) and a
``simulation_seed`` attribute.

The manifest records the energies, electrons per pixel, cutoff, physics models and versions,
simulator version, git commit, device, preset and its settings, dataset seed, creation time and,
per file, its size and sha256. ``dataset_hash`` is the sha256 of the content-defining settings,
the file checksums and the splits; it changes when, and only when, the data changes.

Files are verified when read: sizes at ``open_dataset``, the sha256 of a shard the first time it
is loaded (``verify=True``), so a truncated or corrupt file raises ``DatasetError`` naming it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from datasets.errors import UnknownNameError

FORMAT_NAME = "bse-bench-dataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "dataset.json"
SPLITS_NAME = "splits.json"
CASES_NAME = "cases.h5"
SHARDS_DIR = "shards"
#: groups of ``cases.h5`` holding the dose study's data (``dose-study:test``, ``dose-study:nanocube``...)
DOSE_STUDY_PREFIX = "dose-study:"
SPLIT_NAMES = ("train", "val", "test")
#: Datasets up to this many bytes of arrays are kept in memory once loaded.
DEFAULT_CACHE_BYTES = 4 * 2**30

_STRING = h5py.string_dtype(encoding="utf-8")


class DatasetError(ValueError):
    """A dataset directory or file is missing, incomplete, truncated or corrupt."""


# ----------------------------------------------------------------------------------------------
# Writing


@dataclass
class SampleArrays:
    """A batch of simulated samples, as stored in one shard or one case group."""

    sample_ids: list[str]
    bse: np.ndarray  # (N, E, H, W) float32
    label: np.ndarray  # (N, D, H, W) uint8
    geometry: np.ndarray  # (N, Z, Y, X) uint8
    params: list[dict]
    counts: np.ndarray | None = None  # (N, E, H, W) uint32
    seeds: np.ndarray | None = None  # (N,) uint64 geometry seeds

    def __post_init__(self):
        n = len(self.sample_ids)
        self.bse = np.asarray(self.bse, dtype=np.float32)
        self.label = np.asarray(self.label, dtype=np.uint8)
        self.geometry = np.asarray(self.geometry, dtype=np.uint8)
        if self.counts is not None:
            self.counts = np.asarray(self.counts, dtype=np.uint32)
        if self.seeds is not None:
            self.seeds = np.asarray(self.seeds, dtype=np.uint64)
        for name, ndim in (("bse", 4), ("label", 4), ("geometry", 4), ("counts", 4), ("seeds", 1)):
            arr = getattr(self, name)
            if arr is None:
                continue
            if arr.ndim != ndim or arr.shape[0] != n:
                raise ValueError(f"{name} must have {ndim} dimensions and {n} samples, got shape {arr.shape}")
        if self.counts is not None and self.counts.shape != self.bse.shape:
            raise ValueError(f"counts shape {self.counts.shape} differs from bse shape {self.bse.shape}")
        if len(self.params) != n:
            raise ValueError(f"params must hold {n} dicts, got {len(self.params)}")
        if not np.all(np.isfinite(self.bse)):
            raise ValueError("bse contains NaN or infinite values")


def sample_id(index: int) -> str:
    """Id of random sample ``index`` (0-based), e.g. ``g000123``."""
    return f"g{index:06d}"


def shard_name(shard_index: int) -> str:
    return f"{SHARDS_DIR}/shard-{shard_index:05d}.h5"


def _write_group(group: h5py.Group, arrays: SampleArrays) -> None:
    n, n_energies, height, width = arrays.bse.shape
    image_options = dict(chunks=(1, n_energies, height, width), compression="gzip", compression_opts=4, shuffle=True)
    group.create_dataset("bse", data=arrays.bse, **image_options)
    if arrays.counts is not None:
        group.create_dataset("counts", data=arrays.counts, **image_options)
    volume_options = dict(compression="gzip", compression_opts=4, shuffle=True)
    group.create_dataset("label", data=arrays.label, chunks=(1, *arrays.label.shape[1:]), **volume_options)
    group.create_dataset("geometry", data=arrays.geometry, chunks=(1, *arrays.geometry.shape[1:]), **volume_options)
    group.create_dataset("params", data=[json.dumps(p, sort_keys=True) for p in arrays.params], dtype=_STRING)
    group.create_dataset("sample_id", data=list(arrays.sample_ids), dtype=_STRING)
    if arrays.seeds is not None:
        group.create_dataset("seed", data=arrays.seeds)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on this platform
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (tmp file, fsync, ``os.replace``)."""
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def read_checksum(path) -> str | None:
    """The sha256 recorded next to ``path`` (``sha256sum`` format), or None when there is none."""
    try:
        text = checksum_path(path).read_text().split()
    except OSError:
        return None
    return text[0] if text else None


def write_h5_atomically(path, fill, attrs: dict) -> str:
    """Write an HDF5 file once and atomically; return its sha256.

    ``fill(h5file)`` creates the content. The file is written to a temporary name and fsynced, its
    checksum is recorded in ``<path>.sha256``, and only then is it renamed to ``path``: a file at
    ``path`` is therefore always complete, and its checksum file tells whether it was corrupted later.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with h5py.File(tmp, "w", libver="earliest") as h5:
        for key, value in attrs.items():
            h5.attrs[key] = value
        fill(h5)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    checksum = sha256_file(tmp)
    _atomic_write_bytes(checksum_path(path), f"{checksum}  {path.name}\n".encode())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return checksum


def write_shard(path, arrays: SampleArrays, attrs: dict) -> str:
    """Write one shard file (format in the module docstring) atomically; return its sha256."""
    return write_h5_atomically(path, lambda h5: _write_group(h5, arrays), {**_format_attrs(), **attrs})


def write_cases(path, cases: dict[str, tuple[SampleArrays, dict]], attrs: dict) -> str:
    """Write ``cases.h5``: one group per case name with its arrays and group attributes."""

    def fill(h5):
        for name, (arrays, group_attrs) in cases.items():
            group = h5.create_group(name)
            for key, value in group_attrs.items():
                group.attrs[key] = value
            _write_group(group, arrays)

    return write_h5_atomically(path, fill, {**_format_attrs(), **attrs})


def _format_attrs() -> dict:
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}


def verify_file(path, expected_sha256: str | None) -> str | None:
    """Why the file at ``path`` cannot be used (missing, no checksum, checksum mismatch), or None."""
    path = Path(path)
    if not path.is_file():
        return f"{path} is missing"
    if expected_sha256 is None:
        return f"{path} has no recorded checksum"
    actual = sha256_file(path)
    if actual != expected_sha256:
        return f"{path} fails its sha256 checksum (expected {expected_sha256[:12]}..., got {actual[:12]}...)"
    return None


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


def dataset_hash(manifest: dict, splits_sha256: str) -> str:
    """sha256 over the content-defining manifest entries, every file checksum and the splits."""
    essentials = {
        "format_version": manifest["format_version"],
        "settings": manifest["settings"],
        "physics": manifest["physics"],
        "simulator_version": manifest["simulator"]["version"],
        "device_type": manifest["device_type"],
        "shards": [(s["file"], s["n_samples"], s["sha256"]) for s in manifest["shards"]],
        "cases": None if manifest.get("cases") is None else manifest["cases"]["sha256"],
        "splits": splits_sha256,
    }
    return hashlib.sha256(json.dumps(essentials, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Reading


def open_dataset(path, verify: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES) -> BseDataset:
    """Open a dataset directory written by ``build_dataset``.

    Raises ``FileNotFoundError`` when the directory or its manifest is missing and
    ``DatasetError`` when the build is incomplete, a file is missing or truncated, or (when a file
    is first read with ``verify=True``) its sha256 does not match the manifest.
    """
    return BseDataset(path, verify=verify, cache_bytes=cache_bytes)


def _read_group(group: h5py.Group, rows=slice(None)) -> dict:
    """Arrays of ``group`` (all rows or a selection) as numpy arrays and Python lists."""
    out = {
        "bse": group["bse"][rows],
        "label": group["label"][rows],
        "geometry": group["geometry"][rows],
        "params": [json.loads(p) for p in np.atleast_1d(group["params"].asstr()[rows])],
        "sample_id": [str(s) for s in np.atleast_1d(group["sample_id"].asstr()[rows])],
    }
    out["counts"] = group["counts"][rows] if "counts" in group else None
    out["seed"] = group["seed"][rows] if "seed" in group else None
    return out


class BseDataset:
    """A dataset on disk: random samples in shards, their splits, and the named cases.

    Shards are read lazily; when the whole dataset is at most ``cache_bytes`` a loaded shard stays
    in memory, otherwise single samples are read from disk (one chunk each).
    """

    def __init__(self, path, verify: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"dataset directory not found: {self.path}")
        manifest_path = self.path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a dataset: {MANIFEST_NAME} is missing (build one with "
                f"`python -m datasets build --preset smoke --out {self.path}`)"
            )
        try:
            self.meta = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetError(f"{manifest_path} is corrupt: {err}") from err
        if self.meta.get("format") != FORMAT_NAME:
            raise DatasetError(f"{manifest_path} is not a {FORMAT_NAME} manifest")
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise DatasetError(
                f"{manifest_path} has format version {self.meta.get('format_version')}; "
                f"this code reads version {FORMAT_VERSION}"
            )
        if not self.meta.get("complete"):
            raise DatasetError(
                f"dataset at {self.path} is incomplete (its build was interrupted); resume it with "
                f"`python -m datasets build --preset {self.meta.get('preset')} --out {self.path}`"
            )
        self.verify_files = verify
        self.energies_keV = np.asarray(self.meta["settings"]["energies_keV"], dtype=np.float64)
        #: primaries per pixel the stacks were simulated (and stored) with
        self.stored_electrons_per_pixel = int(self.meta["settings"]["electrons_per_pixel"])
        #: the dose the dataset's images are read at (``settings["dose"]``, else the stored dose):
        #: below the stored dose every stack is an exact thinning of the stored counts (see
        #: :meth:`at_dose`); ``stored=True`` reads the stored stacks instead
        self.electrons_per_pixel = int(self.meta["settings"].get("dose") or self.stored_electrons_per_pixel)
        if not 0 < self.electrons_per_pixel <= self.stored_electrons_per_pixel:
            raise DatasetError(f"{manifest_path}: dose {self.electrons_per_pixel} e-/pixel is not in "
                               f"(0, {self.stored_electrons_per_pixel}] (the stored dose)")
        self._dose_seed = int(self.meta["settings"].get("seed", 0))
        self.hash = self.meta["dataset_hash"]
        self._shards = self.meta["shards"]
        for entry in self._shards + ([self.meta["cases"]] if self.meta.get("cases") else []):
            self._check_size(entry)

        self.ids: list[str] = []
        self._where: dict[str, tuple[int, int]] = {}  # id -> (shard, row)
        self._index: dict[str, int] = {}  # id -> sample index (the key of its noise seed)
        for shard_index, entry in enumerate(self._shards):
            for row in range(entry["n_samples"]):
                sid = sample_id(entry["first_index"] + row)
                self._where[sid] = (shard_index, row)
                self._index[sid] = entry["first_index"] + row
                self.ids.append(sid)

        splits_path = self.path / SPLITS_NAME
        if not splits_path.is_file():
            raise DatasetError(f"{splits_path} is missing")
        if sha256_file(splits_path) != self.meta["splits_sha256"]:
            raise DatasetError(f"{splits_path} does not match the checksum in {MANIFEST_NAME}")
        self.splits = {name: list(ids) for name, ids in json.loads(splits_path.read_text()).items() if name in SPLIT_NAMES}
        check_splits(self.splits, self.ids, where=str(splits_path))

        sample_bytes = int(self.meta.get("sample_nbytes", 0))
        self._cache_all = sample_bytes * len(self.ids) <= cache_bytes
        self._shard_cache: dict[int, dict] = {}
        self._verified: set[str] = set()
        self._cases_cache: dict[str, list[dict]] = {}

    # -- files --------------------------------------------------------------------------------

    def _check_size(self, entry: dict) -> None:
        file = self.path / entry["file"]
        if not file.is_file():
            raise DatasetError(f"dataset file {file} is missing")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise DatasetError(f"dataset file {file} is truncated or altered: {size} bytes, manifest says {entry['bytes']}")

    def _read_verified(self, entry: dict) -> bytes | None:
        """Bytes of a file whose checksum was verified now, or None when already verified/skipped."""
        if not self.verify_files or entry["file"] in self._verified:
            return None
        file = self.path / entry["file"]
        self._check_size(entry)
        data = file.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise DatasetError(f"dataset file {file} is corrupt: its sha256 does not match {MANIFEST_NAME}")
        self._verified.add(entry["file"])
        return data

    def _open_h5(self, entry: dict, data: bytes | None = None) -> h5py.File:
        file = self.path / entry["file"]
        try:
            return h5py.File(io.BytesIO(data) if data is not None else file, "r")
        except OSError as err:
            raise DatasetError(f"dataset file {file} cannot be read as HDF5: {err}") from err

    def verify(self) -> None:
        """Check the sha256 of every file now (normally each is checked when first read)."""
        entries = self._shards + ([self.meta["cases"]] if self.meta.get("cases") else [])
        for entry in entries:
            verdict = verify_file(self.path / entry["file"], entry["sha256"])
            if verdict:
                raise DatasetError(f"dataset file {verdict}")
            self._verified.add(entry["file"])

    def _load_shard(self, shard_index: int) -> dict:
        if shard_index not in self._shard_cache:
            entry = self._shards[shard_index]
            with self._open_h5(entry, self._read_verified(entry)) as h5:
                arrays = _read_group(h5)
            if not self._cache_all:
                return arrays
            self._shard_cache[shard_index] = arrays
        return self._shard_cache[shard_index]

    def _sample_arrays(self, sid: str) -> dict:
        """bse, label, geometry, params and seed of random sample ``sid``."""
        if sid not in self._where:
            raise UnknownNameError(f"unknown sample id {sid!r} in dataset {self.path}")
        shard_index, row = self._where[sid]
        if self._cache_all:
            shard = self._load_shard(shard_index)
            return {key: (None if value is None else value[row]) for key, value in shard.items()}
        entry = self._shards[shard_index]
        self._read_verified(entry)
        with self._open_h5(entry) as h5:
            arrays = _read_group(h5, row)
        return {key: (value[0] if isinstance(value, list) else value) for key, value in arrays.items()}

    # -- public API ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"BseDataset({str(self.path)!r}, preset={self.meta.get('preset')!r}, {sizes}, hash={self.hash[:12]})"

    @property
    def thinned(self) -> bool:
        """Whether images are read below the stored dose (thinned from the stored counts)."""
        return self.electrons_per_pixel < self.stored_electrons_per_pixel

    def at_dose(self, bse: np.ndarray, counts: np.ndarray | None, key: tuple[int, ...]) -> np.ndarray:
        """Yields of one stored stack at the dataset's dose: ``electrons_per_pixel`` of the
        ``stored_electrons_per_pixel`` primaries drawn without replacement
        (``datasets.dose.thin_to_dose``), a fixed draw per (dataset seed, ``key``); the stored
        yields when the doses agree."""
        if not self.thinned:
            return bse
        from datasets.dose import thin_to_dose

        stored = self.stored_electrons_per_pixel
        counts = np.rint(np.asarray(bse, np.float64) * stored) if counts is None else np.asarray(counts)
        rng = np.random.default_rng(np.random.SeedSequence(entropy=self._dose_seed, spawn_key=(0xD05E, *key)))
        return (thin_to_dose(counts, stored, self.electrons_per_pixel, rng) / self.electrons_per_pixel
                ).astype(np.float32)

    def stored_counts(self, split: str) -> np.ndarray:
        """Detected electrons (N, E, H, W) int64 of a split at the stored dose (for fresh thinning)."""
        counts = []
        for sid in self.split_ids(split):
            arrays = self._sample_arrays(sid)
            counts.append(np.rint(np.asarray(arrays["bse"], np.float64) * self.stored_electrons_per_pixel)
                          if arrays["counts"] is None else np.asarray(arrays["counts"]))
        if not counts:
            return np.zeros((0, len(self.energies_keV), *self.meta["image_shape"]), np.int64)
        return np.stack(counts).astype(np.int64)

    def sample(self, sid: str, stored: bool = False) -> dict:
        """One random sample: dict(id, bse (E,H,W) float32, label (D,H,W) uint8, geometry, params, seed);
        ``bse`` at the dataset's dose (``stored=True``: as stored)."""
        arrays = self._sample_arrays(sid)
        return {
            "id": sid,
            "bse": arrays["bse"] if stored else self.at_dose(arrays["bse"], arrays["counts"], (self._index[sid],)),
            "label": arrays["label"],
            "geometry": arrays["geometry"],
            "params": arrays["params"],
            "seed": None if arrays["seed"] is None else int(arrays["seed"]),
        }

    def split_ids(self, name: str) -> list[str]:
        if name not in self.splits:
            raise UnknownNameError(f"unknown split {name!r}; available splits: {list(self.splits)}")
        return self.splits[name]

    def split(self, name: str, noise_dose: float | None = None, seed: int = 0, stored: bool = False) -> SplitDataset:
        """A torch ``Dataset`` over split ``name`` (``train``/``val``/``test``).

        Items are dicts ``{"bse": FloatTensor(E,H,W), "label": FloatTensor(D,H,W), "id": str}``.
        With ``noise_dose`` (electrons per pixel) each image gets shot noise
        ``Poisson(dose * yield) / dose``, drawn from a generator seeded by (``seed``, sample index):
        the same seed gives the same noisy images; use e.g. ``seed=epoch`` for fresh noise.
        Images are at the dataset's dose (``stored=True``: the stored dose).
        """
        return SplitDataset(self, self.split_ids(name), noise_dose=noise_dose, seed=seed, stored=stored)

    def arrays(self, split: str, noise_dose: float | None = None, seed: int = 0, stored: bool = False):
        """``(bse (N,E,H,W) float32, labels (N,D,H,W) uint8, ids)`` of a split, optional noise as ``split``."""
        ids = self.split_ids(split)
        items = [self.sample(sid, stored=stored) for sid in ids]
        n_energies = len(self.energies_keV)
        if items:
            bse = np.stack([item["bse"] for item in items]).astype(np.float32)
            labels = np.stack([item["label"] for item in items]).astype(np.uint8)
        else:
            bse = np.zeros((0, n_energies, *self.meta["image_shape"]), np.float32)
            labels = np.zeros((0, *self.meta["label_shape"]), np.uint8)
        if noise_dose is not None:
            for i, sid in enumerate(ids):
                bse[i] = apply_shot_noise(torch.from_numpy(bse[i]), noise_dose, seed, self._index[sid]).numpy()
        return bse, labels, list(ids)

    def cases(self) -> list[str]:
        """Names of the named test cases stored with the dataset."""
        return list(self.meta["cases"]["names"]) if self.meta.get("cases") else []

    @property
    def dose_study_electrons_per_pixel(self) -> int | None:
        """The top dose of the dose study's own data (None: the dataset has none)."""
        study = (self.meta.get("cases") or {}).get("dose_study")
        return int(study["electrons_per_pixel"]) if study else None

    def dose_study(self) -> dict[str, list[dict]]:
        """The dose study's samples at its top dose, per source (``test``: the first test
        geometries; the named cases): {source: [dict(id, bse, label, geometry, params, counts)]}."""
        study = (self.meta.get("cases") or {}).get("dose_study")
        if not study:
            raise UnknownNameError(f"{self.path} holds no dose-study data (dataset preset field "
                                   "dose_study_electrons_per_pixel)")
        return {group: self._case_group(DOSE_STUDY_PREFIX + group) for group in study["groups"]}

    def _case_group(self, group: str) -> list[dict]:
        if group not in self._cases_cache:
            entry = self.meta["cases"]
            with self._open_h5(entry, self._read_verified(entry)) as h5:
                arrays = _read_group(h5[group])
            self._cases_cache[group] = [
                {
                    "id": sid,
                    "bse": arrays["bse"][i],
                    "label": arrays["label"][i],
                    "geometry": arrays["geometry"][i],
                    "params": arrays["params"][i],
                    "counts": None if arrays["counts"] is None else arrays["counts"][i],
                }
                for i, sid in enumerate(arrays["sample_id"])
            ]
        return self._cases_cache[group]

    def case(self, name: str, stored: bool = False) -> list[dict]:
        """The samples of case ``name``: dicts(id, bse (E,H,W), label (D,H,W) uint8, geometry, params),
        ``bse`` at the dataset's dose (``stored=True``: as stored)."""
        if name not in self.cases():
            raise UnknownNameError(f"case {name!r} is not stored in {self.path}; stored cases: {self.cases()}")
        samples = self._case_group(name)
        if stored or not self.thinned:
            return samples
        case_key = zlib.crc32(name.encode())
        return [{**s, "bse": self.at_dose(s["bse"], s["counts"], (case_key, i))} for i, s in enumerate(samples)]


def _noise_seed(seed: int, sample_index: int) -> int:
    sequence = np.random.SeedSequence(entropy=int(seed), spawn_key=(0x40153, int(sample_index)))
    return int(sequence.generate_state(1, np.uint64)[0] >> 1)


def apply_shot_noise(bse: torch.Tensor, dose: float, seed: int, sample_index: int) -> torch.Tensor:
    """Shot noise for a beam dose of ``dose`` electrons per pixel: ``Poisson(dose * bse) / dose``.

    The Poisson draw uses a ``torch.Generator`` seeded by (``seed``, ``sample_index``).
    """
    dose = float(dose)
    if not np.isfinite(dose) or dose <= 0:
        raise ValueError(f"noise_dose must be a positive number of electrons per pixel, got {dose!r}")
    generator = torch.Generator().manual_seed(_noise_seed(seed, sample_index))
    rate = bse.to(torch.float64).clamp_min(0) * dose
    return (torch.poisson(rate, generator=generator) / dose).to(torch.float32)


class SplitDataset(torch.utils.data.Dataset):
    """Samples of one split as torch tensors (see ``BseDataset.split``)."""

    def __init__(self, dataset: BseDataset, ids: list[str], noise_dose: float | None = None, seed: int = 0,
                 stored: bool = False):
        if noise_dose is not None and (not np.isfinite(float(noise_dose)) or float(noise_dose) <= 0):
            raise ValueError(f"noise_dose must be a positive number of electrons per pixel, got {noise_dose!r}")
        self.dataset = dataset
        self.ids = list(ids)
        self.noise_dose = noise_dose
        self.seed = int(seed)
        self.stored = bool(stored)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        sid = self.ids[index]
        arrays = self.dataset._sample_arrays(sid)
        bse = arrays["bse"] if self.stored else self.dataset.at_dose(arrays["bse"], arrays["counts"],
                                                                      (self.dataset._index[sid],))
        bse = torch.from_numpy(np.array(bse, dtype=np.float32))
        if self.noise_dose is not None:
            bse = apply_shot_noise(bse, self.noise_dose, self.seed, self.dataset._index[sid])
        label = torch.from_numpy(np.array(arrays["label"], dtype=np.float32))
        return {"bse": bse, "label": label, "id": sid}
