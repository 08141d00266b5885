"""Reading a dataset directory's files: the manifest, the shards and ``cases.h5``, each checked
against the manifest (sizes when opened, the sha256 of a file the first time it is read), so a
truncated or corrupt file raises ``DatasetError`` naming it. :class:`datasets.storage.BseDataset`
builds on it."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import h5py

from datasets.dataset_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SPLIT_NAMES,
    SPLITS_NAME,
    DatasetError,
    read_group,
    sample_id,
    sha256_file,
    verify_file,
)
from datasets.errors import UnknownNameError
from datasets.splits import check_splits


def read_manifest(path: Path) -> dict:
    """The manifest of a complete dataset at ``path`` (``FileNotFoundError`` when there is none,
    ``DatasetError`` when it is corrupt, of another format or of an interrupted build)."""
    if not path.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {path}")
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{path} is not a dataset: {MANIFEST_NAME} is missing (build one with "
            f"`python -m datasets build --preset smoke --out {path}`)"
        )
    try:
        meta = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{manifest_path} is corrupt: {err}") from err
    if meta.get("format") != FORMAT_NAME:
        raise DatasetError(f"{manifest_path} is not a {FORMAT_NAME} manifest")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{manifest_path} has format version {meta.get('format_version')}; "
                           f"this code reads version {FORMAT_VERSION}")
    if not meta.get("complete"):
        raise DatasetError(
            f"dataset at {path} is incomplete (its build was interrupted); resume it with "
            f"`python -m datasets build --preset {meta.get('preset')} --out {path}`"
        )
    return meta


class DatasetFiles:
    """The files of a complete dataset: sample ids and where each is stored, the splits, and
    verified reads of shards and case groups.

    When ``cache_all`` a loaded shard stays in memory, otherwise single samples are read from
    disk (one chunk each)."""

    def __init__(self, path: Path, meta: dict, verify: bool, cache_bytes: int):
        self.path, self.meta, self.verify_files = path, meta, verify
        self.shards: list[dict] = meta["shards"]
        self.entries = self.shards + ([meta["cases"]] if meta["cases"] else [])
        for entry in self.entries:
            self.check_size(entry)
        self.ids: list[str] = []
        self.where: dict[str, tuple[int, int]] = {}  # id -> (shard, row)
        self.index: dict[str, int] = {}  # id -> sample index (the key of its random draws)
        for shard_index, entry in enumerate(self.shards):
            for row in range(entry["n_samples"]):
                sid = sample_id(entry["first_index"] + row)
                self.where[sid] = (shard_index, row)
                self.index[sid] = entry["first_index"] + row
                self.ids.append(sid)
        self.splits = self._read_splits()
        self.cache_all = int(meta["sample_nbytes"]) * len(self.ids) <= cache_bytes
        self._shard_cache: dict[int, dict] = {}
        self._verified: set[str] = set()
        self._group_cache: dict[str, list[dict]] = {}

    def _read_splits(self) -> dict[str, list[str]]:
        splits_path = self.path / SPLITS_NAME
        if not splits_path.is_file():
            raise DatasetError(f"{splits_path} is missing")
        if sha256_file(splits_path) != self.meta["splits_sha256"]:
            raise DatasetError(f"{splits_path} does not match the checksum in {MANIFEST_NAME}")
        splits = {name: list(ids) for name, ids in json.loads(splits_path.read_text()).items() if name in SPLIT_NAMES}
        check_splits(splits, self.ids, where=str(splits_path))
        return splits

    def check_size(self, entry: dict) -> None:
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
        self.check_size(entry)
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
        for entry in self.entries:
            verdict = verify_file(self.path / entry["file"], entry["sha256"])
            if verdict:
                raise DatasetError(f"dataset file {verdict}")
            self._verified.add(entry["file"])

    def _load_shard(self, shard_index: int) -> dict:
        if shard_index not in self._shard_cache:
            entry = self.shards[shard_index]
            with self._open_h5(entry, self._read_verified(entry)) as h5:
                arrays = read_group(h5)
            if not self.cache_all:
                return arrays
            self._shard_cache[shard_index] = arrays
        return self._shard_cache[shard_index]

    def sample_arrays(self, sid: str) -> dict:
        """bse, counts, label, geometry, params and seed of random sample ``sid`` as stored."""
        if sid not in self.where:  # not via look_up: a dataset holds thousands of ids
            raise UnknownNameError(f"unknown sample id {sid!r} in dataset {self.path}")
        shard_index, row = self.where[sid]
        if self.cache_all:
            shard = self._load_shard(shard_index)
            return {key: (None if value is None else value[row]) for key, value in shard.items()}
        entry = self.shards[shard_index]
        self._read_verified(entry)
        with self._open_h5(entry) as h5:
            arrays = read_group(h5, row)
        return {key: (value[0] if isinstance(value, list) else value) for key, value in arrays.items()}

    def case_samples(self, group: str) -> list[dict]:
        """The samples of group ``group`` of ``cases.h5`` as stored (kept in memory once read):
        dicts(id, bse, label, geometry, params, counts)."""
        if group not in self._group_cache:
            entry = self.meta["cases"]
            with self._open_h5(entry, self._read_verified(entry)) as h5:
                arrays = read_group(h5[group])
            self._group_cache[group] = [
                {"id": sid, "bse": arrays["bse"][i], "label": arrays["label"][i], "geometry": arrays["geometry"][i],
                 "params": arrays["params"][i], "counts": None if arrays["counts"] is None else arrays["counts"][i]}
                for i, sid in enumerate(arrays["sample_id"])
            ]
        return self._group_cache[group]
