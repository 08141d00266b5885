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

The angular samplers themselves live in :mod:`datasets.kernel` (compiled for CPU and CUDA).

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

from datasets import kernel
from datasets.errors import UnknownNameError, UsageError
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

    ``kernel_code`` selects the angular sampler of :mod:`datasets.kernel` (one source for CPU and
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


class ScreenedRutherford(ElasticModel):
    name = "rutherford"
    reference = "Joy 1995, Monte Carlo Modeling for Electron Microscopy and Microanalysis, eq. 3.2-3.4"
    kernel_code = kernel.ELASTIC_RUTHERFORD

    def cross_section_cm2(self, material, energy_eV):
        e_keV = np.asarray(energy_eV, dtype=np.float64) / 1e3
        z = material.Z
        alpha = 3.4e-3 * z**0.67 / e_keV
        return 5.21e-21 * z**2 / e_keV**2 * 4 * math.pi / (alpha * (1 + alpha)) * ((e_keV + 511) / (e_keV + 1024)) ** 2


class BrowningMott(ElasticModel):
    name = "browning"
    reference = "Browning et al., J. Appl. Phys. 76, 2016 (1994)"
    kernel_code = kernel.ELASTIC_BROWNING

    def cross_section_cm2(self, material, energy_eV):
        e_keV = np.asarray(energy_eV, dtype=np.float64) / 1e3
        z17 = material.Z**1.7
        root = np.sqrt(e_keV)
        return 3.0e-18 * z17 / (e_keV + 0.005 * z17 * root + 0.0007 * material.Z**2 / root)


class TabulatedMott(ElasticModel):
    name = "mott"
    reference = "ELSEPA (Salvat et al., CPC 165, 157 (2005)) tables from Nebula's cstool 1.0.7"
    kernel_code = kernel.ELASTIC_MOTT

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


STOPPING_MODELS: dict[str, type[StoppingModel]] = {"joyluo": JoyLuo, "tabulated": TabulatedStopping,
                                                   "none": NoContinuousLoss}


# --------------------------------------------------------------------------- hard inelastic collisions
#: pi e^4 in eV^2 nm^2 (e^2 = 1.439964 eV nm)
PI_E4_EV2_NM2 = math.pi * 1.439964**2


class InelasticModel(ABC):
    """Discrete (hard) inelastic collisions, each creating a secondary electron.

    The hard/soft split (e.g. Joy 1995 ch. 6; Salvat et al., PENELOPE-2014 manual sec. 3.2.2):
    collisions with an electron of shell i (binding B_i below the vacuum level) transferring W
    above ``W_c,i = cutoff + B_i`` (its secondary leaves with W - B_i, so it can still be
    detected; no softer collision's can) are discrete events; the rest is lost continuously with
    the restricted stopping power ``S_soft = S - sum_i S_hard,i``.
    """

    name: str = ""
    version: str = "1"
    reference: str = ""
    kernel_code: int = kernel.INELASTIC_MOLLER

    @abstractmethod
    def shells(self, material: Material) -> list[tuple[int, float]]:
        """``(electrons per atom, binding eV below the vacuum level)`` of each shell with hard collisions."""

    def hard_inverse_mfp_per_nm(self, material: Material, energy_eV: np.ndarray, shell: int, cutoff_eV: float) -> np.ndarray:
        """Inverse mean free path (1/nm) of hard collisions with ``shell`` (index into :meth:`shells`)."""
        electrons, binding = self.shells(material)[shell]
        return moller_inverse_mfp_per_nm(material.atoms_per_nm3 * electrons, energy_eV, cutoff_eV + binding)

    def hard_stopping_eV_per_nm(self, material: Material, energy_eV: np.ndarray, shell: int, cutoff_eV: float) -> np.ndarray:
        """Energy lost per nm (eV/nm) in those collisions."""
        electrons, binding = self.shells(material)[shell]
        return moller_stopping_eV_per_nm(material.atoms_per_nm3 * electrons, energy_eV, cutoff_eV + binding)


def _moller_domain(energy_eV, w_cut_eV):
    e = np.asarray(energy_eV, dtype=np.float64)
    ok = e > 2.0 * w_cut_eV * 1.01  # 1 %: the kernel's nearest-grid lookup must never see E < 2 W_c
    return np.where(ok, e, 4.0 * w_cut_eV), ok


def moller_inverse_mfp_per_nm(electrons_per_nm3: float, energy_eV, w_cut_eV: float) -> np.ndarray:
    """``n sigma(W_c)`` of Moller collisions (module docstring of :class:`MollerHardCollisions`), 1/nm."""
    e, ok = _moller_domain(energy_eV, w_cut_eV)
    sigma = PI_E4_EV2_NM2 / e * (1 / w_cut_eV - 1 / (e - w_cut_eV) + np.log(w_cut_eV / (e - w_cut_eV)) / e)
    return np.where(ok, electrons_per_nm3 * sigma, 0.0)


def moller_stopping_eV_per_nm(electrons_per_nm3: float, energy_eV, w_cut_eV: float) -> np.ndarray:
    """``n int_{W_c}^{E/2} W d sigma`` of Moller collisions, eV/nm."""
    e, ok = _moller_domain(energy_eV, w_cut_eV)

    def antiderivative(w):  # of W d sigma/dW over pi e^4 / E: ln W + E/(E - W) + 2 ln(E - W)
        return np.log(w) + e / (e - w) + 2 * np.log(e - w)

    s = PI_E4_EV2_NM2 / e * (antiderivative(e / 2) - antiderivative(w_cut_eV))
    return np.where(ok, electrons_per_nm3 * s, 0.0)


class NoHardCollisions(InelasticModel):
    name = "none"
    reference = "continuous slowing down only (no secondaries)"

    def shells(self, material):
        return []


class MollerHardCollisions(InelasticModel):
    """Moller collisions with the valence electrons, taken as free (Moller 1932; Murata et al.
    1981 and Joy 1995 ch. 6, the 'fast secondary' model), per electron::

        d sigma / dW = (pi e^4 / E) [1/W^2 + 1/(E - W)^2 - 1/(W (E - W))],   W_c <= W <= E/2
        sigma(W_c)   = (pi e^4 / E) [1/W_c - 1/(E - W_c) + ln(W_c / (E - W_c)) / E]
        S_hard(W_c)  = (pi e^4 / E) [ln(E / (2 W_c)) + E/(E/2) - E/(E - W_c) + 2 ln((E/2)/(E - W_c))]

    times ``n_atoms * valence_electrons``; the secondary leaves with W - phi. Zero where E <= 2 W_c.
    """

    name = "moller"
    reference = "Moller, Ann. Phys. 406, 531 (1932); Murata et al., J. Appl. Phys. 52, 4396 (1981); Joy 1995 ch. 6"

    def shells(self, material):
        if material.valence_electrons <= 0:
            raise ValueError(f"material {material.name} declares no valence electrons; the '{self.name}' model needs them")
        return [(material.valence_electrons, material.binding_eV)]


class ShellMollerHardCollisions(MollerHardCollisions):
    """``moller`` plus close (binary-encounter) collisions with the inner shells: Moller's cross
    section per shell electron for W above ``cutoff + B_i``, the secondary leaving with W - B_i
    (the close-collision part of PENELOPE's inelastic model, Salvat et al. 2014 sec. 3.2.2).
    Distant (dipole) ionisations of inner shells are not included."""

    name = "moller-shells"
    reference = ("Moller 1932 per shell, binding energies from the X-ray Data Booklet; close collisions as in "
                 "Salvat et al., PENELOPE-2014 (NEA/NSC/DOC(2015)3) sec. 3.2.2")

    def shells(self, material):
        return super().shells(material) + [(n, b + material.binding_eV) for n, b in material.inner_shells]


class PennInelastic(InelasticModel):
    """Every inelastic collision from the optical energy-loss function with the full Penn
    algorithm (:mod:`datasets.penn`; Penn, Phys. Rev. B 35, 482 (1987); Shinotsuka et al., Surf.
    Interface Anal. 47, 871 (2015)), events and secondaries as in Nebula (van Kessel and Hagen,
    SoftwareX 12, 100605 (2020); :func:`datasets.kernel.penn_event`). All losses are discrete:
    it needs the ``none`` stopping model. Cross sections are looked up at the kinetic energy
    inside the material, ``K = E + U`` (E vacuum-referenced, U the band structure's inner
    potential)."""

    name = "penn"
    reference = ("full Penn algorithm (Penn, PRB 35, 482 (1987); Shinotsuka et al., SIA 47, 871 (2015)) on cstool 1.0.7 "
                 "optical ELF data (Palik; Henke et al. 1993); secondaries as Nebula (Mao et al., JAP 104, 114907 "
                 "(2008); Kieft and Bosch, J. Phys. D 41, 215310 (2008))")
    kernel_code = kernel.INELASTIC_PENN

    def shells(self, material):
        return [(0, 0.0)]  # one table: every inelastic collision (the inner shells are chosen per event)

    def _tables(self, material):
        from datasets import penn

        if material.band is None:
            raise ValueError(f"material {material.name} has no band structure; the '{self.name}' model needs one")
        return penn.tables(material)

    def hard_inverse_mfp_per_nm(self, material, energy_eV, shell, cutoff_eV):
        kinetic = np.asarray(energy_eV, dtype=np.float64) + material.band.inner_potential_eV
        return self._tables(material).inverse_mfp_and_stopping(kinetic)[0]

    def hard_stopping_eV_per_nm(self, material, energy_eV, shell, cutoff_eV):
        kinetic = np.asarray(energy_eV, dtype=np.float64) + material.band.inner_potential_eV
        return self._tables(material).inverse_mfp_and_stopping(kinetic)[1]


INELASTIC_MODELS: dict[str, type[InelasticModel]] = {
    "none": NoHardCollisions, "moller": MollerHardCollisions, "moller-shells": ShellMollerHardCollisions,
    "penn": PennInelastic}

#: Surface barrier models: ``none`` (electrons leave unchanged) or ``step`` (the inner-potential
#: step U = E_F + phi with quantum-mechanical transmission; :func:`datasets.kernel.barrier_transmits`).
#: ``inner-potential``: the same step with U from the band structure as cstool defines it
#: (:class:`datasets.materials.BandStructure`: Si 12.44 eV, Cu 11.53 eV). Refraction (the normal
#: momentum scaled on transmission) is not simulated: in the kernel's slab scenes an electron
#: that crosses the top plane is detected and one that crosses the bottom plane reaches the
#: terminator, so its direction afterwards changes no count; Si/Cu interfaces inside the slab
#: are not barriers (|dU| = 0.9 eV).
BARRIER_MODELS: dict[str, str] = {
    "none": "no surface barrier",
    "step": "inner-potential step U = E_F + phi, quantum transmission T = 4kk'/(k+k')^2 "
            "(Shimizu and Ding, Rep. Prog. Phys. 55, 487 (1992); Kieft and Bosch, J. Phys. D 41, 215310 (2008))",
    "inner-potential": "inner-potential step with cstool's band-structure U (Si: valence + gap + affinity = 12.44 eV; "
                       "Cu: Fermi + work function = 11.53 eV), quantum transmission T = 4kk'/(k+k')^2",
}


#: The fields of a physics choice, as stored in dataset metadata.
PHYSICS_FIELDS = ("elastic", "stopping", "inelastic", "barrier")
#: Named physics presets (``--physics NAME``): model names for each field.
PHYSICS_PRESETS: dict[str, dict[str, str]] = {
    "csda": {"elastic": "browning", "stopping": "joyluo", "inelastic": "none", "barrier": "none"},
    "nebula-like": {"elastic": "browning", "stopping": "tabulated", "inelastic": "moller-shells", "barrier": "step"},
    "nebula-penn": {"elastic": "mott", "stopping": "none", "inelastic": "penn", "barrier": "inner-potential"},
}
DEFAULT_PHYSICS = "nebula-like"


@dataclass(frozen=True)
class PhysicsConfig:
    """Choice of physics models by name (see module docstring); the default is the preset
    ``DEFAULT_PHYSICS`` (the physics that best reproduces Nebula's stacks of the paper's scene,
    ``python -m datasets compare-nebula``; the README's table). ``csda`` is the earlier, faster
    physics: single elastic scattering with continuous slowing down, no secondaries, no barrier.
    ``nebula-penn`` is Nebula's own physics: its Mott tables, the full-Penn inelastic model (every
    loss discrete, :mod:`datasets.penn`) and cstool's inner potential.
    """

    elastic: str = PHYSICS_PRESETS[DEFAULT_PHYSICS]["elastic"]
    stopping: str = PHYSICS_PRESETS[DEFAULT_PHYSICS]["stopping"]
    inelastic: str = PHYSICS_PRESETS[DEFAULT_PHYSICS]["inelastic"]
    barrier: str = PHYSICS_PRESETS[DEFAULT_PHYSICS]["barrier"]

    def __post_init__(self):
        for field, known in (("elastic", ELASTIC_MODELS), ("stopping", STOPPING_MODELS),
                             ("inelastic", INELASTIC_MODELS), ("barrier", BARRIER_MODELS)):
            if getattr(self, field) not in known:
                raise UnknownNameError(f"unknown {field} model '{getattr(self, field)}'; known: {', '.join(known)}")
        if (self.inelastic == "penn") != (self.stopping == "none"):
            raise UsageError(f"the 'penn' inelastic model carries every energy loss and needs '--stopping none', and "
                             f"'none' stopping needs 'penn'; got inelastic '{self.inelastic}' with stopping "
                             f"'{self.stopping}'")

    @classmethod
    def preset(cls, name: str, **overrides) -> PhysicsConfig:
        """A named preset (``csda``, ``nebula-like``), with single models overridden by name."""
        if name not in PHYSICS_PRESETS:
            raise UnknownNameError(f"unknown physics preset '{name}'; known: {', '.join(PHYSICS_PRESETS)}")
        return cls(**{**PHYSICS_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_record(cls, record: dict | None) -> PhysicsConfig:
        """The config of a stored ``describe()`` dict. Records written before inelastic physics
        existed (only ``elastic``/``stopping``) were simulated without it: they read as ``none``."""
        record = dict(record or {})
        if record and "inelastic" not in record:
            record.setdefault("inelastic", "none")
            record.setdefault("barrier", "none")
        return cls(**{k: record[k] for k in PHYSICS_FIELDS if k in record})

    def names(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in PHYSICS_FIELDS}

    def label(self) -> str:
        for name, models in PHYSICS_PRESETS.items():
            if models == self.names():
                return name
        return "+".join(self.names().values())

    def elastic_model(self) -> ElasticModel:
        return ELASTIC_MODELS[self.elastic]()

    def stopping_model(self) -> StoppingModel:
        return STOPPING_MODELS[self.stopping]()

    def inelastic_model(self) -> InelasticModel:
        return INELASTIC_MODELS[self.inelastic]()

    def describe(self) -> dict:
        elastic, stopping, inelastic = self.elastic_model(), self.stopping_model(), self.inelastic_model()
        return {
            **asdict(self),
            "label": self.label(),
            "elastic_version": elastic.version,
            "elastic_reference": elastic.reference,
            "stopping_version": stopping.version,
            "stopping_reference": stopping.reference,
            "inelastic_version": inelastic.version,
            "inelastic_reference": inelastic.reference,
            "barrier_reference": BARRIER_MODELS[self.barrier],
        }


class PhysicsTables:
    """Per-material lookup tables on the log energy grid: what the transport kernel reads.

    ``materials[0]`` must be ``None`` (vacuum: no scattering, no energy loss). The kernel looks up
    the nearest grid point (0.3 % energy steps). ``imfp`` (M, K) 1/nm is the inverse mean free path
    of all discrete collisions (elastic + hard inelastic), ``hard`` (M, K) its hard-inelastic part
    and ``stopping`` (M, K) eV/nm the continuous loss (the soft part when hard collisions are
    simulated); ``elastic_imfp`` (M, K) is kept for reports. ``majorant`` (K,) is the largest
    ``imfp`` over the materials (for delta tracking); ``surface`` (M, 1 + S) = (barrier U, binding
    of each of the S shells with hard collisions) eV, ``hard_table`` (M, 1 + S, K) = (all hard
    collisions, each shell's); ``elastic_code``, ``z_of`` (M,) and ``icdf`` (M, K', J) feed the angular sampler.
    Hard collisions transfer more than ``cutoff_eV + phi`` (their secondary can be detected).
    """

    def __init__(self, materials: list[Material | None], config: PhysicsConfig, cutoff_eV: float = 50.0):
        if materials[0] is not None:
            raise ValueError("material index 0 is reserved for vacuum")
        self.materials = materials
        self.config = config
        grid = energy_grid_eV()
        elastic, stopping, inelastic = config.elastic_model(), config.stopping_model(), config.inelastic_model()
        self.cutoff_eV = float(cutoff_eV)
        n = len(materials)
        shells = [[] if m is None else inelastic.shells(m) for m in materials]
        n_shells = max(1, max(len(s) for s in shells))
        self.elastic_imfp, self.stopping = np.zeros((n, GRID_POINTS)), np.zeros((n, GRID_POINTS))
        self.shell_imfp = np.zeros((n, n_shells, GRID_POINTS))
        self.surface = np.zeros((n, 1 + n_shells))
        for i, material in enumerate(materials):
            if material is None:
                continue
            self.elastic_imfp[i] = elastic.inverse_mfp_per_nm(material, grid)
            total = stopping.stopping_eV_per_nm(material, grid)
            hard_loss = np.zeros(GRID_POINTS)
            for j, (_, binding) in enumerate(shells[i]):
                self.shell_imfp[i, j] = inelastic.hard_inverse_mfp_per_nm(material, grid, j, self.cutoff_eV)
                hard_loss += inelastic.hard_stopping_eV_per_nm(material, grid, j, self.cutoff_eV)
                self.surface[i, 1 + j] = binding
            if config.inelastic == "penn":  # every loss discrete
                self.surface[i, 0] = self._barrier(material)
                continue
            if np.any(hard_loss > total):
                worst = float(grid[np.argmax(hard_loss / total)])
                raise ValueError(f"{config.inelastic} hard-collision stopping exceeds the {config.stopping} stopping "
                                 f"power of {material.name} (near {worst:.0f} eV): the soft part would be negative")
            self.stopping[i] = np.maximum(total - hard_loss, 1e-3)
            self.surface[i, 0] = self._barrier(material)
        self.inelastic_code = int(inelastic.kernel_code)
        self._penn_tables(materials)
        self.hard = self.shell_imfp.sum(axis=1)
        #: what the kernel reads: [:, 0] all hard collisions, [:, 1 + j] those with shell j
        self.hard_table = np.ascontiguousarray(np.concatenate([self.hard[:, None], self.shell_imfp], axis=1))
        self.imfp = self.elastic_imfp + self.hard
        self.n_grid = GRID_POINTS
        self.log_e0 = math.log(GRID_E_MIN_EV)
        self.inv_dlog = (GRID_POINTS - 1) / (math.log(GRID_E_MAX_EV) - math.log(GRID_E_MIN_EV))
        self.majorant = self.imfp.max(axis=0) * 1.0001 + 1e-6
        self.elastic_code = int(elastic.kernel_code)
        self.z_of = np.array([0.0 if m is None else m.Z for m in materials])
        table = elastic.angular_table(materials)
        if table is None:
            self.icdf, self.icdf_log_e0, self.icdf_inv_dlog = np.ones((len(materials), 1, 2)), 0.0, 0.0
        else:
            icdf, icdf_grid = table
            self.icdf = np.ascontiguousarray(icdf, dtype=np.float64)
            self.icdf_log_e0 = float(np.log(icdf_grid[0]))
            self.icdf_inv_dlog = float((len(icdf_grid) - 1) / (np.log(icdf_grid[-1]) - np.log(icdf_grid[0])))

    def _barrier(self, material: Material) -> float:
        if self.config.barrier == "step":
            return material.barrier_eV
        if self.config.barrier == "inner-potential":
            if material.band is None:
                raise ValueError(f"material {material.name} has no band structure for the 'inner-potential' barrier")
            return material.band.inner_potential_eV
        return 0.0

    def _penn_tables(self, materials: list[Material | None]) -> None:
        """``band`` (M, 4 + shells), ``loss_icdf`` (M, K, P), ``q_cdf`` (M, W, Q) and their grids
        (``penn_grid_params``: kernel parameter index -> value) for the full-Penn model; 1-element
        placeholders otherwise."""
        from datasets import penn

        self.penn_grid_params: dict[int, float] = {}
        if self.config.inelastic != "penn":
            self.band, self.loss_icdf, self.q_cdf = np.zeros((len(materials), 4)), np.zeros((1, 1, 2)), np.zeros((1, 1, 2))
            return
        n_shells = max(len(m.inner_shells) for m in materials if m is not None)
        self.band = np.zeros((len(materials), kernel.BAND_SHELLS + 2 * n_shells))
        self.loss_icdf = np.zeros((len(materials), penn.N_K_ROWS, penn.N_PROBABILITIES))
        self.q_cdf = np.zeros((len(materials), penn.N_OMEGA, penn.N_Q))
        for i, material in enumerate(materials):
            if material is None:
                continue
            tables = penn.tables(material)
            self.loss_icdf[i], self.q_cdf[i] = tables.loss_icdf, tables.q_cdf
            self.band[i, kernel.BAND_FERMI] = material.band.fermi_eV
            self.band[i, kernel.BAND_GAP] = material.band.gap_eV
            self.band[i, kernel.BAND_U] = material.band.inner_potential_eV
            self.band[i, kernel.BAND_N_SHELLS] = len(material.inner_shells)
            self.band[i, kernel.BAND_VALENCE] = material.valence_electrons
            for j, (electrons, binding) in enumerate(material.inner_shells):
                self.band[i, kernel.BAND_SHELLS + 2 * j] = binding
                self.band[i, kernel.BAND_SHELLS + 2 * j + 1] = electrons

        def log_grid(grid):  # (ln x0, 1 / d ln x) of a log-spaced grid
            return math.log(grid[0]), (len(grid) - 1) / (math.log(grid[-1]) - math.log(grid[0]))

        for (lo, inv), grid in (((kernel.P_LOSS_LOG_K0, kernel.P_LOSS_INV_DLOG), penn.k_rows_eV()),
                                ((kernel.P_OMEGA_LOG0, kernel.P_OMEGA_INV_DLOG), penn.omega_grid_eV()),
                                ((kernel.P_Q_LOG0, kernel.P_Q_INV_DLOG), penn.q_grid_sqrt_eV())):
            self.penn_grid_params[lo], self.penn_grid_params[inv] = log_grid(grid)

    def grid_index(self, energy_eV: float) -> int:
        """The kernel's nearest grid point of an energy."""
        k = int((math.log(energy_eV) - self.log_e0) * self.inv_dlog + 0.5)
        return min(max(k, 0), self.n_grid - 1)
