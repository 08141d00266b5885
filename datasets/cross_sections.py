"""Elastic scattering and continuous energy-loss models of the Monte Carlo, and their data.

Every model is selectable by name through :class:`~datasets.physics.PhysicsConfig`, so reports can show how much
the physics matters. Energies are kinetic energies; cross sections in cm^2 (the literature's
unit) are turned into inverse mean free paths in 1/nm with ``imfp = n sigma``, ``n`` the atom
number density (nm^-3).

Elastic models (single scattering, one event per collision):

``rutherford``
    Screened Rutherford cross section with relativistic correction (Joy, *Monte Carlo Modeling
    for Electron Microscopy and Microanalysis*, 1995, eq. 3.2-3.4), E in keV::

        sigma = 5.21e-21 Z^2/E^2 * 4 pi/(alpha (1 + alpha)) * ((E + 511)/(E + 1024))^2  [cm^2]
        alpha = 3.4e-3 Z^0.67 / E
        cos(theta) = 1 - 2 alpha R / (1 + alpha - R),  R ~ U(0, 1)

``browning``
    Browning's empirical fit to Mott cross sections (Browning et al., J. Appl. Phys. 76, 2016
    (1994)), E in keV::

        sigma = 3.0e-18 Z^1.7 / (E + 0.005 Z^1.7 E^0.5 + 0.0007 Z^2 / E^0.5)  [cm^2]
        r = 300 E / Z + Z^3 / (3e5 E)
        with probability r/(1 + r): screened Rutherford angle with alpha = 7.0e-3 / E,
        otherwise isotropic: cos(theta) = 1 - 2 R

``mott``
    Tabulated Mott cross sections (ELSEPA, via the Nebula simulator's cstool tables in
    ``datasets/data/{silicon,copper}.npz``): inverse mean free path interpolated log-log, and the
    angle drawn from the tabulated inverse CDF of cos(theta) with stochastic interpolation
    between energy rows and linear interpolation between the 512 probability columns.

The angular samplers themselves live in :mod:`datasets.kernel.elastic` (compiled for CPU and CUDA).

Energy-loss models (continuous slowing down, applied along each free flight):

``joyluo``
    Joy and Luo's modified Bethe law (Scanning 11, 176 (1989)), E in keV, valid down to ~50 eV::

        dE/ds = -78500 rho Z / (A E) ln(1.166 (E + k J) / J)   [keV/cm]
        J = (9.76 Z + 58.5 Z^-0.19) eV,   k = 0.731 + 0.0688 log10(Z)

``tabulated``
    The valence-electron (Penn dielectric) stopping power of the Nebula tables (inner shells not
    included), interpolated log-log.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path

import numpy as np

from datasets.kernel import layout
from datasets.materials import Material

DATA_DIR = Path(__file__).resolve().parent / "data"

#: Energy grid of the lookup tables: log-spaced, 1 eV .. 100 keV (nearest-point lookup, 0.3% steps).
GRID_E_MIN_EV = 1.0
GRID_E_MAX_EV = 1.0e5
GRID_POINTS = 4096


def energy_grid_eV() -> np.ndarray:
    return np.geomspace(GRID_E_MIN_EV, GRID_E_MAX_EV, GRID_POINTS)


@lru_cache(maxsize=8)
def load_mott_table(stem: str) -> dict[str, np.ndarray]:
    """Load a tabulated cross-section file ``datasets/data/<stem>.npz`` (see MOTT_TABLES.md)."""
    path = DATA_DIR / f"{stem}.npz"
    if not path.exists():
        raise FileNotFoundError(f"no tabulated cross sections for '{stem}' ({path} missing)")
    with np.load(path) as data:
        return {k: data[k].astype(np.float64) for k in data.files}


def _loglog_interp(x_new, x, y, floor=1e-30):
    return np.exp(np.interp(np.log(x_new), np.log(x), np.log(np.maximum(y, floor))))


# --------------------------------------------------------------------------- elastic models
class ElasticModel(ABC):
    """Elastic scattering: the inverse mean free path here, the polar-angle sampler in the kernel.

    ``kernel_code`` selects the angular sampler of :mod:`datasets.kernel.elastic` (one source for CPU and
    CUDA); :meth:`angular_table` gives the per-material table it needs, if any.
    """

    name: str = ""
    version: str = "1"
    reference: str = ""
    kernel_code: int = -1

    @abstractmethod
    def cross_section_cm2(self, material: Material, energy_eV: np.ndarray) -> np.ndarray:
        """Total elastic cross section per atom (cm^2)."""

    def inverse_mfp_per_nm(self, material: Material, energy_eV: np.ndarray) -> np.ndarray:
        """Inverse elastic mean free path n * sigma in 1/nm (sigma in cm^2 -> nm^2: x 1e14)."""
        return material.atoms_per_nm3 * self.cross_section_cm2(material, energy_eV) * 1e14

    def angular_table(self, materials: list[Material | None]) -> tuple[np.ndarray, np.ndarray] | None:
        """``(icdf (M, K, J), energy grid (K,) eV)`` for tabulated samplers; ``None`` for analytic ones."""
        return None


class AnalyticElastic(ElasticModel):
    """An elastic model with a closed-form cross section of the energy in keV."""

    def cross_section_cm2(self, material, energy_eV):
        return self.cross_section_at_keV(material, np.asarray(energy_eV, dtype=np.float64) / 1e3)

    @abstractmethod
    def cross_section_at_keV(self, material: Material, e_keV: np.ndarray) -> np.ndarray:
        """Total elastic cross section per atom (cm^2) at ``e_keV`` keV."""


class ScreenedRutherford(AnalyticElastic):
    name = "rutherford"
    reference = "Joy 1995, Monte Carlo Modeling for Electron Microscopy and Microanalysis, eq. 3.2-3.4"
    kernel_code = layout.ELASTIC_RUTHERFORD

    def cross_section_at_keV(self, material, e_keV):
        z = material.Z
        alpha = 3.4e-3 * z**0.67 / e_keV
        return 5.21e-21 * z**2 / e_keV**2 * 4 * math.pi / (alpha * (1 + alpha)) * ((e_keV + 511) / (e_keV + 1024)) ** 2


class BrowningMott(AnalyticElastic):
    name = "browning"
    reference = "Browning et al., J. Appl. Phys. 76, 2016 (1994)"
    kernel_code = layout.ELASTIC_BROWNING

    def cross_section_at_keV(self, material, e_keV):
        z17 = material.Z**1.7
        root = np.sqrt(e_keV)
        return 3.0e-18 * z17 / (e_keV + 0.005 * z17 * root + 0.0007 * material.Z**2 / root)


class TabulatedMott(ElasticModel):
    name = "mott"
    reference = "ELSEPA (Salvat et al., CPC 165, 157 (2005)) tables from Nebula's cstool 1.0.7"
    kernel_code = layout.ELASTIC_MOTT

    def _table(self, material):
        if material.mott_table is None:
            raise ValueError(f"material {material.name} has no tabulated Mott cross sections; use 'browning'")
        return load_mott_table(material.mott_table)

    def cross_section_cm2(self, material, energy_eV):
        return self.inverse_mfp_per_nm(material, energy_eV) / (material.atoms_per_nm3 * 1e14)

    def inverse_mfp_per_nm(self, material, energy_eV):
        table = self._table(material)
        return _loglog_interp(np.asarray(energy_eV, dtype=np.float64), table["energy_eV"], table["elastic_imfp_per_nm"])

    def angular_table(self, materials):
        rows = []
        grid = None
        for material in materials:
            if material is None:
                rows.append(None)
                continue
            table = self._table(material)
            if grid is None:
                grid = table["energy_eV"]
            elif not np.allclose(grid, table["energy_eV"]):
                raise ValueError("Mott tables of different materials use different energy grids")
            rows.append(table["elastic_costheta_icdf"])
        shape = next(r.shape for r in rows if r is not None)
        return np.stack([np.ones(shape) if r is None else r for r in rows]), grid


ELASTIC_MODELS: dict[str, type[ElasticModel]] = {
    "browning": BrowningMott,
    "rutherford": ScreenedRutherford,
    "mott": TabulatedMott,
}


# --------------------------------------------------------------------------- stopping models
class StoppingModel(ABC):
    name: str = ""
    version: str = "1"
    reference: str = ""

    @abstractmethod
    def stopping_eV_per_nm(self, material: Material, energy_eV: np.ndarray) -> np.ndarray:
        """Continuous energy loss per unit path, eV/nm (positive)."""


class JoyLuo(StoppingModel):
    name = "joyluo"
    reference = "Joy and Luo, Scanning 11, 176 (1989)"

    def stopping_eV_per_nm(self, material, energy_eV):
        e_keV = np.asarray(energy_eV, dtype=np.float64) / 1e3
        z = material.Z
        j_keV = (9.76 * z + 58.5 * z**-0.19) * 1e-3
        k = 0.731 + 0.0688 * math.log10(z)
        log_term = np.log(1.166 * (e_keV + k * j_keV) / j_keV)
        # 78500 keV/cm * 1e-7 cm/nm * 1e3 eV/keV = 7.85 eV/nm
        s = 7.85 * material.density_g_cm3 * z / (material.A * e_keV) * log_term
        return np.maximum(s, 1e-3)


class TabulatedStopping(StoppingModel):
    name = "tabulated"
    reference = "Nebula cstool 1.0.7 valence (Penn dielectric) stopping power"

    def stopping_eV_per_nm(self, material, energy_eV):
        if material.mott_table is None:
            raise ValueError(f"material {material.name} has no tabulated stopping power; use 'joyluo'")
        table = load_mott_table(material.mott_table)
        return _loglog_interp(np.asarray(energy_eV, dtype=np.float64), table["inelastic_energy_eV"],
                              table["stopping_power_eV_per_nm"], floor=1e-3)


class NoContinuousLoss(StoppingModel):
    """No continuous slowing down: for an inelastic model whose discrete events carry every loss
    (``penn``); any other inelastic model would never lose energy with it."""

    name = "none"
    reference = "no continuous energy loss (every loss is a discrete inelastic event)"

    def stopping_eV_per_nm(self, material, energy_eV):
        return np.zeros(np.shape(energy_eV))


class PennStopping(StoppingModel):
    """The full-Penn stopping power of the material's optical ELF (:mod:`datasets.penn`; every
    loss up to ``K - F``), at the kinetic energy inside the material ``K = E + U`` (E
    vacuum-referenced, U the band structure's inner potential): the total that the ``penn-mixed``
    inelastic model splits into hard events and continuous loss."""

    name = "penn"
    reference = ("full-Penn stopping power (Shinotsuka et al., SIA 47, 871 (2015) eq. 7) of cstool 1.0.7 optical ELF "
                 "data (Palik; Henke et al. 1993)")

    def stopping_eV_per_nm(self, material, energy_eV):
        from datasets import penn

        if material.band is None or material.elf_file is None:
            raise ValueError(f"material {material.name} has no band structure or optical ELF; the 'penn' stopping "
                             f"model needs both")
        kinetic = np.asarray(energy_eV, dtype=np.float64) + material.band.inner_potential_eV
        return np.maximum(penn.tables(material).inverse_mfp_and_stopping(kinetic)[1], 1e-3)


STOPPING_MODELS: dict[str, type[StoppingModel]] = {"joyluo": JoyLuo, "tabulated": TabulatedStopping,
                                                   "none": NoContinuousLoss, "penn": PennStopping}
