"""The BSE detectors and the probe of a simulation: host-side parameters of
:mod:`datasets.kernel.instrument` (the kernel's ``P_DET_*`` entries and ``Beam`` probe arrays).

- :class:`PlaneDetector` (default, the paper's): every electron leaving the top surface with
  E above the cutoff counts 1.
- :class:`AnnularDetector`: a solid-state (diode) BSE detector seeing take-off angles (above the
  surface; take-off = 90 deg - polar angle from the surface normal) in ``[takeoff_min_deg,
  takeoff_max_deg]``; its response is proportional to the electron's energy above the diode's
  threshold (the dead layer's loss; Reimer, Scanning Electron Microscopy, 2nd ed., sec. 5.2):
  ``w = (E - E_t) / (E0 - E_t)`` for ``E > E_t``, 0 otherwise, normalised so that an electron at
  the beam's nominal energy E0 counts exactly 1. The image is the mean weight per primary.
- :class:`WindowDetector`: an energy filter counting low-loss electrons, ``E >= E0 - dE`` (the
  window ``[E0 - dE, E0]``; only a beam energy spread can put an electron above E0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from datasets.kernel import layout

#: sigma of a Gaussian from its full width at half maximum: sigma = FWHM / (2 sqrt(2 ln 2)).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class PlaneDetector:
    """The paper's detector: a plane above the sample counting every electron above the cutoff."""

    weighted = False

    def kernel_params(self) -> dict[int, float]:
        return {layout.P_DETECTOR: layout.DETECTOR_PLANE}

    def describe(self) -> dict:
        return {"kind": "plane"}


@dataclass(frozen=True)
class AnnularDetector:
    """Annular solid-state BSE diode: take-off angles (deg) ``[takeoff_min_deg, takeoff_max_deg]``,
    response ``(E - threshold_eV) / (E0 - threshold_eV)`` above ``threshold_eV``."""

    takeoff_min_deg: float = 0.0
    takeoff_max_deg: float = 90.0
    threshold_eV: float = 0.0
    weighted = True

    def __post_init__(self):
        if not 0.0 <= self.takeoff_min_deg < self.takeoff_max_deg <= 90.0:
            raise ValueError(f"take-off angles must satisfy 0 <= min < max <= 90 deg, got "
                             f"[{self.takeoff_min_deg}, {self.takeoff_max_deg}]")
        if not (math.isfinite(self.threshold_eV) and self.threshold_eV >= 0.0):
            raise ValueError(f"threshold_eV must be a non-negative number, got {self.threshold_eV}")

    def kernel_params(self) -> dict[int, float]:
        # the kernel compares sin(take-off); the open ends take every electron (no rounding at 0 or 90 deg)
        low = -1.0 if self.takeoff_min_deg <= 0.0 else math.sin(math.radians(self.takeoff_min_deg))
        high = 2.0 if self.takeoff_max_deg >= 90.0 else math.sin(math.radians(self.takeoff_max_deg))
        return {layout.P_DETECTOR: layout.DETECTOR_ANNULAR, layout.P_DET_LOW: low, layout.P_DET_HIGH: high,
                layout.P_DET_THRESHOLD_EV: float(self.threshold_eV)}

    def describe(self) -> dict:
        return {"kind": "annular", "takeoff_min_deg": float(self.takeoff_min_deg),
                "takeoff_max_deg": float(self.takeoff_max_deg), "threshold_eV": float(self.threshold_eV)}


@dataclass(frozen=True)
class WindowDetector:
    """Energy-filtered (low-loss) detector: counts electrons with ``E >= E0 - window_eV``."""

    window_eV: float = 100.0
    weighted = False

    def __post_init__(self):
        if not (math.isfinite(self.window_eV) and self.window_eV > 0.0):
            raise ValueError(f"window_eV must be a positive number, got {self.window_eV}")

    def kernel_params(self) -> dict[int, float]:
        return {layout.P_DETECTOR: layout.DETECTOR_WINDOW, layout.P_DET_WINDOW_EV: float(self.window_eV)}

    def describe(self) -> dict:
        return {"kind": "window", "window_eV": float(self.window_eV)}


def per_energy(value, n_energies: int, name: str) -> np.ndarray:
    """A non-negative scalar or one value per beam energy, as a float64 (E,) array."""
    array = np.asarray(value, dtype=np.float64)
    array = np.full(n_energies, float(array)) if array.ndim == 0 else array
    if array.shape != (n_energies,) or not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must be a non-negative number or {n_energies} of them (one per energy), got {value!r}")
    return array


def probe_sigmas(probe_fwhm_nm, energy_spread_eV, n_energies: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's ``Beam.sigma`` (nm) and ``Beam.spread`` (eV) from FWHMs (scalars or per energy)."""
    fwhm = per_energy(probe_fwhm_nm, n_energies, "probe_fwhm_nm")
    spread = per_energy(energy_spread_eV, n_energies, "energy_spread_eV")
    return fwhm / FWHM_PER_SIGMA, spread / FWHM_PER_SIGMA


def detector_from_spec(spec: str | None):
    """A detector from its command-line spelling: ``plane``, ``annular:MIN,MAX,THRESHOLD`` (take-off
    angles in deg, threshold in eV) or ``window:DE`` (eV)."""
    if spec is None or spec == "plane":
        return PlaneDetector()
    kind, _, values = spec.partition(":")
    numbers = [float(v) for v in values.split(",")] if values else []
    if kind == "annular" and len(numbers) == 3:
        return AnnularDetector(*numbers)
    if kind == "window" and len(numbers) == 1:
        return WindowDetector(numbers[0])
    raise ValueError(f"unknown detector {spec!r}: plane | annular:MIN_DEG,MAX_DEG,THRESHOLD_EV | window:DE_EV")


DETECTORS = {"plane": PlaneDetector, "annular": AnnularDetector, "window": WindowDetector}


def detector_from_record(record: dict | None):
    """The detector a ``describe()`` record names (``{"kind": ..., **parameters}``; None: the plane)."""
    if record is None:
        return PlaneDetector()
    if not isinstance(record, dict) or "kind" not in record:
        raise ValueError(f"a detector record is a dict with a 'kind', got {record!r}")
    from datasets.errors import look_up

    cls = look_up("detector", record["kind"], DETECTORS)
    try:
        return cls(**{k: v for k, v in record.items() if k != "kind"})
    except TypeError as err:
        raise ValueError(f"bad parameters for the {record['kind']} detector: {err}") from err
