"""BSE stack files: the exchange format between simulator, methods and users.

A stack file is a ``.npz`` holding

- ``bse``: (E, H, W) float32 backscatter yield per pixel (fraction of primaries detected);
- ``energies_keV``: (E,) float beam energies, strictly increasing;
- optionally ``counts`` (E, H, W) int64 detected electrons and ``electrons_per_pixel`` (scalar, the
  simulated dose; ``BseStack.simulated_electrons_per_pixel``)
  when the stack was simulated, and ``cutoff_eV`` (scalar);
- optionally ``labels`` (D, H, W) uint8 ground truth: the Cu mask over the Si block (1 = Cu), the
  reconstruction target, written by ``python -m datasets simulate`` for geometries covering the
  block; ``python -m benchmark reconstruct`` scores its volume against it.

A stack measured on a microscope can be brought in the same format (only ``bse`` and
``energies_keV`` are required).
"""

from __future__ import annotations

import json
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.files import atomic_path


@dataclass
class BseStack:
    """A multi-energy BSE image stack; ``bse[e]`` is the image at ``energies_keV[e]``."""

    bse: np.ndarray
    energies_keV: np.ndarray
    counts: np.ndarray | None = None
    simulated_electrons_per_pixel: int | None = None  #: saved as the file's ``electrons_per_pixel``
    cutoff_eV: float | None = None
    meta: dict = field(default_factory=dict)
    labels: np.ndarray | None = None

    def __post_init__(self):
        self.bse = np.asarray(self.bse, dtype=np.float32)
        self.energies_keV = np.asarray(self.energies_keV, dtype=np.float64)
        check_stack_arrays(self.bse, self.energies_keV)
        if self.counts is not None:
            self.counts = np.asarray(self.counts, dtype=np.int64)
            if self.counts.shape != self.bse.shape:
                raise ValueError(f"counts shape {self.counts.shape} differs from bse shape {self.bse.shape}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if self.labels.ndim != 3 or self.labels.shape[1:] != self.bse.shape[1:]:
                raise ValueError(f"labels must have shape (D, {self.bse.shape[1]}, {self.bse.shape[2]}) to match "
                                 f"bse {self.bse.shape}, got {self.labels.shape}")
            if not np.isin(self.labels, (0, 1)).all():
                raise ValueError("labels must be a Cu mask of 0 and 1 (1 = Cu), got values "
                                 f"{sorted(np.unique(self.labels).tolist())[:5]}")
            self.labels = self.labels.astype(np.uint8)

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"bse": self.bse, "energies_keV": self.energies_keV}
        if self.counts is not None:
            arrays["counts"] = self.counts
        if self.simulated_electrons_per_pixel is not None:
            arrays["electrons_per_pixel"] = np.int64(self.simulated_electrons_per_pixel)
        if self.cutoff_eV is not None:
            arrays["cutoff_eV"] = np.float64(self.cutoff_eV)
        if self.labels is not None:
            arrays["labels"] = self.labels
        if self.meta:
            arrays["meta_json"] = np.array(json.dumps(self.meta, default=str))
        if path.is_dir():
            raise ValueError(f"{path} is a directory; give a file name such as {path / 'stack.npz'}")
        return save_npz(path, arrays)

    @classmethod
    def load(cls, path) -> BseStack:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"BSE stack file not found: {path}")
        if path.is_dir():
            raise ValueError(f"{path} is a directory, not a BSE stack .npz file")
        with path.open("rb") as handle:
            magic = handle.read(6)
        if magic.startswith(b"\x93NUMPY"):
            raise ValueError(f"{path} is a single NumPy array (.npy), not a BSE stack: save one with "
                             "np.savez(path, bse=(E, H, W) yields, energies_keV=(E,) keV)")
        if not magic.startswith(b"PK"):
            raise ValueError(f"{path} is not a .npz (zip) file; a BSE stack is an .npz holding 'bse' and 'energies_keV'")
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
                    simulated_electrons_per_pixel=(int(data["electrons_per_pixel"]) if "electrons_per_pixel" in files
                                                   else None),
                    cutoff_eV=float(data["cutoff_eV"]) if "cutoff_eV" in files else None,
                    meta=meta,
                    labels=data["labels"] if "labels" in files else None,
                )
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise ValueError(f"{path} is corrupt or not a .npz BSE stack file: {err}") from err
        except ValueError as err:
            if "pickle" in str(err):
                raise ValueError(f"{path} holds pickled objects, which are never loaded; a BSE stack holds "
                                 "plain arrays 'bse' and 'energies_keV'") from err
            raise


def check_yields(bse: np.ndarray, source: str = "the stack") -> None:
    """Raise ``ValueError`` when ``bse`` cannot be backscatter yields (fractions in [0, 1])."""
    low, high = float(np.min(bse)), float(np.max(bse))
    if low < 0:
        raise ValueError(f"{source}: bse holds negative values (min {low:.4g}); yields are fractions of the "
                         "primaries detected, in [0, 1]")
    if high > 1:
        raise ValueError(f"{source}: bse holds values above 1 (max {high:.4g}); yields are electrons detected "
                         "per primary (backscattered and fast secondaries), below 1 at any usable dose. If these "
                         "are raw counts, divide them by the electrons per pixel, or pass --electrons-per-pixel N")


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


#: one ``.npz`` write at a time per process: ``atomic_path``'s temporary name is per process,
#: and threads of one process (concurrent first runs of a PSF cache) must not share it
_NPZ_WRITE_LOCK = threading.Lock()


def save_npz(path, arrays: dict, compressed: bool = True) -> Path:
    """Write ``arrays`` as an ``.npz`` file at ``path`` atomically (``datasets.files.atomic_path``;
    ``compressed``: ``np.savez_compressed``, else ``np.savez``)."""
    path = Path(path)
    with _NPZ_WRITE_LOCK, atomic_path(path, fsync=False) as tmp, open(tmp, "wb") as handle:
        (np.savez_compressed if compressed else np.savez)(handle, **arrays)
    return path
