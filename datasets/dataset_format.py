"""On-disk format of a simulated dataset: layout, HDF5 shards, checksums, the dataset hash.

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
``simulation_seed``, ``energies_keV``, ``electrons_per_pixel`` (the simulated dose),
``cutoff_eV``. ``cases.h5`` has one group per case (``nanocube``, ``nanowire``...) with the
same datasets (``sample_id`` = the case sample name, e.g. ``position1``; no ``seed``) and a
``simulation_seed`` attribute.

The manifest records the energies, the simulated electrons per pixel (``electrons_per_pixel``),
cutoff, physics models and versions, simulator version, git commit, device, preset and its
settings, dataset seed, creation time and, per file, its size and sha256. ``dataset_hash`` is the
sha256 of the content-defining settings, the file checksums and the splits; it changes when, and
only when, the data changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from datasets.files import atomic_path, write_text_atomic

FORMAT_NAME = "bse-bench-dataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "dataset.json"
SPLITS_NAME = "splits.json"
CASES_NAME = "cases.h5"
SHARDS_DIR = "shards"
#: groups of ``cases.h5`` holding the dose study's data (``dose-study:test``, ``dose-study:nanocube``...)
DOSE_STUDY_PREFIX = "dose-study:"
SPLIT_NAMES = ("train", "val", "test")

_STRING = h5py.string_dtype(encoding="utf-8")


class DatasetError(ValueError):
    """A dataset directory or file is missing, incomplete, truncated or corrupt."""


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


# ----------------------------------------------------------------------------------------------
# HDF5 groups


def write_group(group: h5py.Group, arrays: SampleArrays) -> None:
    """Write ``arrays`` into ``group`` (a shard file or a case group of ``cases.h5``)."""
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


def read_group(group: h5py.Group, rows=slice(None)) -> dict:
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


# ----------------------------------------------------------------------------------------------
# Checksummed files


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

    ``fill(h5file)`` creates the content. The file is written to a temporary name, its checksum
    is recorded in ``<path>.sha256``, and only then is it flushed and renamed to ``path``
    (``datasets.files.atomic_path``): a file at ``path`` is therefore always complete, and its
    checksum file tells whether it was corrupted later.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver="earliest") as h5:
            for key, value in attrs.items():
                h5.attrs[key] = value
            fill(h5)
        checksum = sha256_file(tmp)
        write_text_atomic(checksum_path(path), f"{checksum}  {path.name}\n")
    return checksum


def _format_attrs() -> dict:
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}


def write_shard(path, arrays: SampleArrays, attrs: dict) -> str:
    """Write one shard file (format in the module docstring) atomically; return its sha256."""
    return write_h5_atomically(path, lambda h5: write_group(h5, arrays), {**_format_attrs(), **attrs})


def write_cases(path, cases: dict[str, tuple[SampleArrays, dict]], attrs: dict) -> str:
    """Write ``cases.h5``: one group per case name with its arrays and group attributes."""

    def fill(h5):
        for name, (arrays, group_attrs) in cases.items():
            group = h5.create_group(name)
            for key, value in group_attrs.items():
                group.attrs[key] = value
            write_group(group, arrays)

    return write_h5_atomically(path, fill, {**_format_attrs(), **attrs})


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


def dataset_hash(manifest: dict, splits_sha256: str) -> str:
    """sha256 over the content-defining manifest entries, every file checksum and the splits."""
    essentials = {
        "format_version": manifest["format_version"],
        "settings": manifest["settings"],
        "physics": manifest["physics"],
        "simulator_version": manifest["simulator"]["version"],
        "device_type": manifest["device_type"],
        "shards": [(s["file"], s["n_samples"], s["sha256"]) for s in manifest["shards"]],
        "cases": None if manifest["cases"] is None else manifest["cases"]["sha256"],
        "splits": splits_sha256,
    }
    return hashlib.sha256(json.dumps(essentials, sort_keys=True).encode()).hexdigest()
