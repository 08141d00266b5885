"""The files a build writes besides the shards' content: the manifest (started, then completed),
``splits.json``, and the HDF5 attributes that tie each unit's file to the settings that made it
(so a resumed build reuses exactly the files of its settings)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import torch

from datasets import dataset_format as fmt
from datasets.build_units import WorkUnit, dose_study_test_ids, physics_config
from datasets.files import write_json_atomic
from datasets.presets import DatasetPreset
from datasets.provenance import git_commit
from datasets.scene import BLOCK_Z_NM, PAPER_SHAPE_ZYX
from datasets.splits import check_splits, make_splits


def content_fields(preset: DatasetPreset, simulator: ModuleType, device_type: str) -> dict:
    """Manifest entries that decide the data; a resumed build must match them exactly."""
    return {
        "settings": preset.settings(),
        "physics": physics_config(simulator, preset).describe(),
        "simulator": {"module": simulator.__name__, "version": str(simulator.SIMULATOR_VERSION)},
        "device_type": device_type,
    }


def _differences(old: dict, new: dict, prefix="") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _read_earlier_manifest(path: Path) -> dict | None:
    """The manifest of an earlier build at ``path``; a corrupt one is set aside (None)."""
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        return manifest
    except (UnicodeDecodeError, ValueError) as err:
        # the shards carry their own checksums and settings: keep the good ones, rebuild the manifest
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        os.replace(path, aside)
        print(f"{path} is corrupt ({err}); kept as {aside.name}, rebuilding the manifest from the "
              "verified shards (shards of other settings are rebuilt)", file=sys.stderr)
        return None


def start_manifest(out: Path, preset: DatasetPreset, content: dict) -> dict:
    """Load the manifest of an earlier (possibly interrupted) build, or write a new one."""
    path = out / fmt.MANIFEST_NAME
    manifest = _read_earlier_manifest(path)
    if manifest is not None:
        differences = _differences({key: manifest.get(key) for key in content}, content)
        if differences:
            raise ValueError(
                f"{out} holds a dataset built with other settings ({'; '.join(differences)}); "
                "choose another --out directory or delete the old dataset"
            )
        return manifest
    manifest = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "complete": False,
        "preset": preset.name,
        **content,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(path, manifest)
    return manifest


def ensure_splits(out: Path, preset: DatasetPreset) -> tuple[dict, str]:
    """Write ``splits.json`` once (a pure function of ids, fractions and seed); return it and its sha256."""
    ids = [fmt.sample_id(i) for i in range(preset.n_geometries)]
    path = out / fmt.SPLITS_NAME
    if path.is_file():
        try:
            splits = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise fmt.DatasetError(f"{path} is corrupt: {err}") from err
        check_splits(splits, ids, where=str(path))
    else:
        splits = make_splits(ids, preset.test_fraction, preset.val_fraction, preset.seed)
        write_json_atomic(path, splits)
    return splits, fmt.sha256_file(path)


def unit_attrs(unit: WorkUnit, content: dict) -> dict:
    """The HDF5 attributes that tie a unit's file to the settings that made it."""
    preset = unit.preset
    attrs = {
        "energies_keV": np.asarray(preset.energies_keV, dtype=np.float64),
        "electrons_per_pixel": preset.simulated_electrons_per_pixel,  # file format: the simulated dose
        "cutoff_eV": preset.cutoff_eV,
        "content_json": json.dumps(content, sort_keys=True, default=str),
    }
    if unit.kind == "shard":
        attrs.update(shard_index=unit.index, first_index=unit.first_index, simulation_seed=np.uint64(unit.simulation_seed))
    return attrs


def _attrs_mismatch(path: Path, expected: dict) -> str | None:
    """Why the file's attributes differ from ``expected`` (``None`` when they agree)."""
    try:
        with h5py.File(path, "r") as h5:
            for key, value in expected.items():
                if key not in h5.attrs:
                    return f"{path} has no '{key}' attribute"
                stored = h5.attrs[key]
                stored = stored.decode() if isinstance(stored, bytes) else stored
                if isinstance(value, str) or isinstance(stored, str):
                    same = str(stored) == str(value)
                else:
                    same = np.array_equal(np.asarray(stored), np.asarray(value))
                if not same:
                    return f"{path} was built with other settings ('{key}' differs)"
    except OSError as err:
        return f"{path} is unreadable ({err})"
    return None


def finished_entry(out: Path, unit: WorkUnit, content: dict) -> dict | None:
    """Manifest entry of a unit whose file verifies against its checksum and was made with these
    settings; else delete its leftovers."""
    path = out / unit.file
    verdict = fmt.verify_file(path, fmt.read_checksum(path))
    if verdict is None:
        verdict = _attrs_mismatch(path, unit_attrs(unit, content))
    if verdict is None:
        return {"file": unit.file, "sha256": fmt.read_checksum(path), "bytes": path.stat().st_size}
    if path.exists() or fmt.checksum_path(path).exists():
        print(f"rebuilding: {verdict}", file=sys.stderr)
        path.unlink(missing_ok=True)
        fmt.checksum_path(path).unlink(missing_ok=True)
    return None


def write_unit(out: Path, unit: WorkUnit, payload, content: dict) -> dict:
    """Write a unit's file (its shard, or ``cases.h5``); its manifest entry."""
    path = out / unit.file
    attrs = unit_attrs(unit, content)
    if unit.kind == "shard":
        checksum = fmt.write_shard(path, payload, attrs)
    else:
        checksum = fmt.write_cases(path, payload, attrs)
    return {"file": unit.file, "sha256": checksum, "bytes": path.stat().st_size}


def _versions() -> dict:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "h5py": h5py.__version__,
    }


def _cases_entry(preset: DatasetPreset, units: list[WorkUnit], entries: dict) -> dict | None:
    if not (preset.cases or preset.dose_study_electrons_per_pixel):
        return None
    cases_unit = next(u for u in units if u.kind == "cases")
    cases = {**entries[cases_unit.file], "names": list(preset.cases), "n_samples": cases_unit.n_samples}
    if preset.dose_study_electrons_per_pixel:
        test_ids = dose_study_test_ids(preset)
        # file format: ``electrons_per_pixel`` is the dose study data's simulated dose
        cases["dose_study"] = {"electrons_per_pixel": preset.dose_study_electrons_per_pixel,
                               "groups": (["test"] if test_ids else []) + list(preset.cases), "test_ids": test_ids}
    return cases


def complete_manifest(manifest: dict, preset: DatasetPreset, units: list[WorkUnit], entries: dict,
                      splits: dict, splits_sha256: str, seconds: float) -> dict:
    """The manifest of the finished build, with its ``dataset_hash``."""
    image_shape = list(PAPER_SHAPE_ZYX[1:])
    label_shape = [BLOCK_Z_NM[1] - BLOCK_Z_NM[0], *PAPER_SHAPE_ZYX[1:]]
    pixels = image_shape[0] * image_shape[1]
    shards = [
        {**entries[u.file], "first_index": u.first_index, "n_samples": u.n_samples, "simulation_seed": u.simulation_seed}
        for u in units if u.kind == "shard"
    ]
    manifest = {
        **manifest,
        "complete": True,
        "n_samples": preset.n_geometries,
        "energies_keV": list(preset.energies_keV),
        "electrons_per_pixel": preset.simulated_electrons_per_pixel,  # file format: the simulated dose
        "cutoff_eV": preset.cutoff_eV,
        "dataset_seed": preset.seed,
        "image_shape": image_shape,
        "label_shape": label_shape,
        "geometry_shape": list(PAPER_SHAPE_ZYX),
        "sample_nbytes": len(preset.energies_keV) * pixels * 8 + int(np.prod(label_shape)) + int(np.prod(PAPER_SHAPE_ZYX)),
        "shards": shards,
        "cases": _cases_entry(preset, units, entries),
        "splits_sha256": splits_sha256,
        "split_sizes": {name: len(splits[name]) for name in fmt.SPLIT_NAMES},
        "git_commit": git_commit(),
        "versions": _versions(),
        "last_build_seconds": round(seconds, 2),
        "completed_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    manifest["dataset_hash"] = fmt.dataset_hash(manifest, splits_sha256)
    return manifest
