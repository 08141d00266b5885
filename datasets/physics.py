"""Physics models of the Monte Carlo: elastic scattering and continuous energy loss.

Every model is selectable by name through :class:`PhysicsConfig`, so reports can show how much
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
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

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
    """Elastic scattering: inverse mean free path and a sampler of the polar angle."""

    name: str = ""
    version: str = "1"
    reference: str = ""

    @abstractmethod
    def cross_section_cm2(self, material: Material, energy_eV: np.ndarray) -> np.ndarray:
        """Total elastic cross section per atom (cm^2)."""

    def inverse_mfp_per_nm(self, material: Material, energy_eV: np.ndarray) -> np.ndarray:
        """Inverse elastic mean free path n * sigma in 1/nm (sigma in cm^2 -> nm^2: x 1e14)."""
        return material.atoms_per_nm3 * self.cross_section_cm2(material, energy_eV) * 1e14

    @abstractmethod
    def angular_sampler(self, materials: list[Material | None], device) -> AngularSampler:
        """A sampler over the material index used by the transport (index 0 = vacuum)."""


class AngularSampler(ABC):
    @abstractmethod
    def __call__(self, material_index: torch.Tensor, energy_eV: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
        """cos(theta) for each electron, from two uniform random numbers per electron."""


def _z_tensor(materials, device):
    return torch.tensor([0.0 if m is None else m.Z for m in materials], dtype=torch.float32, device=device)


class ScreenedRutherford(ElasticModel):
    name = "rutherford"
    reference = "Joy 1995, Monte Carlo Modeling for Electron Microscopy and Microanalysis, eq. 3.2-3.4"

    def cross_section_cm2(self, material, energy_eV):
        e_keV = np.asarray(energy_eV, dtype=np.float64) / 1e3
        z = material.Z
        alpha = 3.4e-3 * z**0.67 / e_keV
        return 5.21e-21 * z**2 / e_keV**2 * 4 * math.pi / (alpha * (1 + alpha)) * ((e_keV + 511) / (e_keV + 1024)) ** 2

    def angular_sampler(self, materials, device):
        return _RutherfordSampler(3.4e-3 * _z_tensor(materials, device) ** 0.67)


class _RutherfordSampler(AngularSampler):
    def __init__(self, alpha_keV: torch.Tensor):
        self.alpha_keV = alpha_keV  # alpha * E_keV per material

    def __call__(self, material_index, energy_eV, u1, u2):
        alpha = self.alpha_keV.index_select(0, material_index) * (1e3 / energy_eV)
        return 1.0 - 2.0 * alpha * u2 / (1.0 + alpha - u2)


class BrowningMott(ElasticModel):
    name = "browning"
    reference = "Browning et al., J. Appl. Phys. 76, 2016 (1994)"

    def cross_section_cm2(self, material, energy_eV):
        e_keV = np.asarray(energy_eV, dtype=np.float64) / 1e3
        z17 = material.Z**1.7
        root = np.sqrt(e_keV)
        return 3.0e-18 * z17 / (e_keV + 0.005 * z17 * root + 0.0007 * material.Z**2 / root)

    def angular_sampler(self, materials, device):
        return _BrowningSampler(_z_tensor(materials, device))


class _BrowningSampler(AngularSampler):
    def __init__(self, z: torch.Tensor):
        self.z = z.clamp_min(1.0)

    def __call__(self, material_index, energy_eV, u1, u2):
        z = self.z.index_select(0, material_index)
        e_keV = energy_eV * 1e-3
        r = 300.0 * e_keV / z + z**3 / (3.0e5 * e_keV)
        alpha = 7.0e-3 / e_keV
        rutherford = 1.0 - 2.0 * alpha * u2 / (1.0 + alpha - u2)
        isotropic = 1.0 - 2.0 * u2
        return torch.where(u1 * (1.0 + r) <= r, rutherford, isotropic)


class TabulatedMott(ElasticModel):
    name = "mott"
    reference = "ELSEPA (Salvat et al., CPC 165, 157 (2005)) tables from Nebula's cstool 1.0.7"

    def _table(self, material):
        if material.mott_table is None:
            raise ValueError(f"material {material.name} has no tabulated Mott cross sections; use 'browning'")
        return load_mott_table(material.mott_table)

    def cross_section_cm2(self, material, energy_eV):
        return self.inverse_mfp_per_nm(material, energy_eV) / (material.atoms_per_nm3 * 1e14)

    def inverse_mfp_per_nm(self, material, energy_eV):
        table = self._table(material)
        return _loglog_interp(np.asarray(energy_eV, dtype=np.float64), table["energy_eV"], table["elastic_imfp_per_nm"])

    def angular_sampler(self, materials, device):
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
        icdf = np.stack([np.ones(shape) if r is None else r for r in rows])
        return _TableSampler(torch.tensor(icdf, dtype=torch.float32, device=device), grid)


class _TableSampler(AngularSampler):
    def __init__(self, icdf: torch.Tensor, grid_eV: np.ndarray):
        self.icdf = icdf.reshape(-1)  # (M * K * J,)
        self.n_materials, self.n_energies, self.n_columns = icdf.shape
        self.log_e0 = float(np.log(grid_eV[0]))
        self.inv_dlog = float((len(grid_eV) - 1) / (np.log(grid_eV[-1]) - np.log(grid_eV[0])))

    def __call__(self, material_index, energy_eV, u1, u2):
        k_float = ((energy_eV.log() - self.log_e0) * self.inv_dlog).clamp(0, self.n_energies - 1.000001)
        k0 = k_float.floor()
        row = (k0 + (u1 < (k_float - k0)).to(k0.dtype)).long()  # stochastic interpolation in energy
        j_float = u2 * (self.n_columns - 1)
        j0 = j_float.floor().clamp(max=self.n_columns - 2)
        frac = j_float - j0
        base = (material_index.long() * self.n_energies + row) * self.n_columns + j0.long()
        lo = self.icdf.index_select(0, base)
        hi = self.icdf.index_select(0, base + 1)
        return lo + (hi - lo) * frac


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


STOPPING_MODELS: dict[str, type[StoppingModel]] = {"joyluo": JoyLuo, "tabulated": TabulatedStopping}


@dataclass(frozen=True)
class PhysicsConfig:
    """Choice of physics models by name (see module docstring).

    The default, ``browning`` elastic scattering with ``joyluo`` stopping, is the combination that
    lands inside the measured backscatter bands of both Si and Cu (``python -m datasets validate``;
    the README's validation table).
    """

    elastic: str = "browning"
    stopping: str = "joyluo"

    def __post_init__(self):
        if self.elastic not in ELASTIC_MODELS:
            raise KeyError(f"unknown elastic model '{self.elastic}'; known: {', '.join(ELASTIC_MODELS)}")
        if self.stopping not in STOPPING_MODELS:
            raise KeyError(f"unknown stopping model '{self.stopping}'; known: {', '.join(STOPPING_MODELS)}")

    def elastic_model(self) -> ElasticModel:
        return ELASTIC_MODELS[self.elastic]()

    def stopping_model(self) -> StoppingModel:
        return STOPPING_MODELS[self.stopping]()

    def describe(self) -> dict:
        elastic, stopping = self.elastic_model(), self.stopping_model()
        return {
            **asdict(self),
            "elastic_version": elastic.version,
            "elastic_reference": elastic.reference,
            "stopping_version": stopping.version,
            "stopping_reference": stopping.reference,
        }


class PhysicsTables:
    """Per-material lookup tables on the log energy grid, on one torch device.

    ``materials[0]`` must be ``None`` (vacuum: no scattering, no energy loss). Lookups use the
    nearest grid point (0.3 % energy steps). ``majorant`` is the largest inverse mean free path
    over the materials, used for delta (Woodcock) tracking.
    """

    def __init__(self, materials: list[Material | None], config: PhysicsConfig, device="cpu"):
        if materials[0] is not None:
            raise ValueError("material index 0 is reserved for vacuum")
        self.materials = materials
        self.config = config
        grid = energy_grid_eV()
        elastic, stopping = config.elastic_model(), config.stopping_model()
        imfp = np.zeros((len(materials), GRID_POINTS))
        stop = np.zeros((len(materials), GRID_POINTS))
        for i, material in enumerate(materials):
            if material is not None:
                imfp[i] = elastic.inverse_mfp_per_nm(material, grid)
                stop[i] = stopping.stopping_eV_per_nm(material, grid)
        self.device = torch.device(device)
        self.n_grid = GRID_POINTS
        self.log_e0 = math.log(GRID_E_MIN_EV)
        self.inv_dlog = (GRID_POINTS - 1) / (math.log(GRID_E_MAX_EV) - math.log(GRID_E_MIN_EV))
        self.imfp = torch.tensor(imfp.reshape(-1), dtype=torch.float32, device=self.device)
        self.stopping = torch.tensor(stop.reshape(-1), dtype=torch.float32, device=self.device)
        self.majorant = torch.tensor(imfp.max(axis=0) * 1.0001 + 1e-6, dtype=torch.float32, device=self.device)
        self.sample_cos_theta = elastic.angular_sampler(materials, self.device)

    def energy_index(self, energy_eV: torch.Tensor) -> torch.Tensor:
        k = ((energy_eV.log() - self.log_e0) * self.inv_dlog + 0.5).long()
        return k.clamp_(0, self.n_grid - 1)
