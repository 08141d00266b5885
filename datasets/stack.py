"""BSE stack files: the exchange format between simulator, methods and users.

A stack file is a ``.npz`` holding

- ``bse``: (E, H, W) float32 backscatter yield per pixel (fraction of primaries detected);
- ``energies_keV``: (E,) float beam energies, strictly increasing;
- optionally ``counts`` (E, H, W) int64 detected electrons and ``electrons_per_pixel`` (scalar)
  when the stack was simulated, and ``cutoff_eV`` (scalar).

A stack measured on a microscope can be brought in the same format (only ``bse`` and
``energies_keV`` are required).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class BseStack:
    """A multi-energy BSE image stack; ``bse[e]`` is the image at ``energies_keV[e]``."""

    bse: np.ndarray
    energies_keV: np.ndarray
    counts: np.ndarray | None = None
    electrons_per_pixel: int | None = None
    cutoff_eV: float | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.bse = np.asarray(self.bse, dtype=np.float32)
        self.energies_keV = np.asarray(self.energies_keV, dtype=np.float64)
        check_stack_arrays(self.bse, self.energies_keV)
        if self.counts is not None:
            self.counts = np.asarray(self.counts, dtype=np.int64)
            if self.counts.shape != self.bse.shape:
                raise ValueError(f"counts shape {self.counts.shape} differs from bse shape {self.bse.shape}")

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"bse": self.bse, "energies_keV": self.energies_keV}
        if self.counts is not None:
            arrays["counts"] = self.counts
        if self.electrons_per_pixel is not None:
            arrays["electrons_per_pixel"] = np.int64(self.electrons_per_pixel)
        if self.cutoff_eV is not None:
            arrays["cutoff_eV"] = np.float64(self.cutoff_eV)
        if self.meta:
            arrays["meta_json"] = np.array(json.dumps(self.meta, default=str))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> BseStack:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"BSE stack file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                files = set(data.files)
                missing = {"bse", "energies_keV"} - files
                if missing:
                    raise ValueError(f"{path} is not a BSE stack file: missing arrays {sorted(missing)}")
                meta = json.loads(str(data["meta_json"])) if "meta_json" in files else {}
                return cls(
                    bse=data["bse"],
                    energies_keV=data["energies_keV"],
                    counts=data["counts"] if "counts" in files else None,
                    electrons_per_pixel=int(data["electrons_per_pixel"]) if "electrons_per_pixel" in files else None,
                    cutoff_eV=float(data["cutoff_eV"]) if "cutoff_eV" in files else None,
                    meta=meta,
                )
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise ValueError(f"{path} is corrupt or not a .npz BSE stack file: {err}") from err


def check_stack_arrays(bse: np.ndarray, energies_keV: np.ndarray) -> None:
    """Raise ``ValueError`` naming the problem when a stack is malformed."""
    if bse.ndim != 3:
        raise ValueError(f"bse must have shape (E, H, W), got {bse.shape}")
    if energies_keV.ndim != 1 or energies_keV.shape[0] != bse.shape[0]:
        raise ValueError(
            f"energies_keV must have shape ({bse.shape[0]},) to match bse {bse.shape}, got {energies_keV.shape}"
        )
    if not np.all(np.isfinite(bse)):
        raise ValueError("bse contains NaN or infinite values")
    if not np.all(np.isfinite(energies_keV)) or np.any(energies_keV <= 0):
        raise ValueError(f"energies_keV must be finite and positive, got {energies_keV.tolist()}")
    if np.any(np.diff(energies_keV) <= 0):
        raise ValueError(f"energies_keV must be strictly increasing, got {energies_keV.tolist()}")
