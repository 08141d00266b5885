"""Material table: id -> material, with the data the physics models need.

A material is described by an (effective) atomic number ``Z``, atomic weight ``A`` (g/mol) and
mass density (g/cm^3); compounds can be added with effective Z and A. Tabulated Mott cross
sections (``mott_table``) are optional and only needed by the ``mott`` elastic model.

Electronic constants (used by the ``moller`` inelastic model and the ``step`` surface barrier):
``barrier_eV`` U, the vacuum level above the bottom of the band the conduction/valence electrons
occupy (Fermi energy + work function for a metal; valence-band width + band gap + electron
affinity for a semiconductor); ``binding_eV`` phi, the least energy that lifts a valence electron
to the vacuum level (work function; band gap + affinity); ``valence_electrons``, the weakly bound
electrons per atom a fast electron collides with as if they were free (Moller). Values as in the
material files of Nebula's cstool (Si: valence-band width 7.83 eV, Ohya et al., NIFS-DATA-84
(2003); gap 1.12 eV and affinity 4.05 eV, Ioffe NSM database; Cu: E_F 7.0 eV, Ashcroft & Mermin
table 2.1; work function 4.53 eV). ``inner_shells``: electrons and binding energies (eV, relative to
the Fermi level / valence-band top) of the shells below the valence band, from the X-ray Data
Booklet (Williams, table 1-1; Bearden and Burr, Rev. Mod. Phys. 39, 125 (1967)).

Band structure as Nebula's cstool 1.0.7 defines it (its ``silicon.yaml`` / ``copper.yaml`` and
``band_structure.py``; used by the ``penn`` inelastic model and the ``inner-potential`` barrier):
a metal has a Fermi energy F above the band bottom and a work function W, inner potential
U = F + W; a semiconductor has a valence-band width V, gap G and affinity X: U = V + G + X, its
"Fermi energy" mid-gap F = V + G/2, and the least excitation energy is V + G (both electrons must
end in the conduction band). cstool's silicon uses V = 7.27 eV, so U(Si) = 12.44 eV, 0.56 eV below
``barrier_eV`` = 13.0 eV of the ``step`` barrier (7.83 eV there is cstool's mid-gap F, taken as
the band width); copper's U = 11.53 eV is the same in both. ``elf_file``: the optical
energy-loss function (``datasets/data/elf/``, see its README).
"""

from __future__ import annotations

from dataclasses import dataclass

from datasets.errors import look_up, unknown_name

AVOGADRO = 6.02214076e23


@dataclass(frozen=True)
class BandStructure:
    """cstool's band model (eV): ``metal`` (fermi, work_function) or ``semiconductor`` (valence
    band width, band_gap, affinity)."""

    model: str
    fermi: float = 0.0
    work_function: float = 0.0
    valence: float = 0.0
    band_gap: float = 0.0
    affinity: float = 0.0

    def __post_init__(self):
        look_up("band-structure model", self.model, dict.fromkeys(("metal", "semiconductor")))

    @property
    def fermi_eV(self) -> float:
        """Fermi energy above the band bottom: F (metal) or mid-gap V + G/2 (semiconductor)."""
        return self.fermi if self.model == "metal" else self.valence + 0.5 * self.band_gap

    @property
    def min_excitation_eV(self) -> float:
        """Least kinetic energy (above the band bottom) that can excite a secondary: F or V + G."""
        return self.fermi if self.model == "metal" else self.valence + self.band_gap

    @property
    def gap_eV(self) -> float:
        """Band gap (0 for a metal): smaller losses excite no electron (optical phonons)."""
        return 0.0 if self.model == "metal" else self.band_gap

    @property
    def inner_potential_eV(self) -> float:
        """U, the vacuum level above the band bottom: F + W (metal) or V + G + X (semiconductor)."""
        if self.model == "metal":
            return self.fermi + self.work_function
        return self.valence + self.band_gap + self.affinity


@dataclass(frozen=True)
class Material:
    """A homogeneous material. ``mott_table``: stem of ``datasets/data/<stem>.npz`` (Nebula/ELSEPA)."""

    name: str
    Z: float
    A: float  # g/mol
    density_g_cm3: float
    mott_table: str | None = None
    barrier_eV: float = 0.0  # U = E_F + phi: inner potential step at the surface (eV)
    binding_eV: float = 0.0  # phi: least energy to free a valence electron into vacuum (eV)
    valence_electrons: int = 0  # weakly bound electrons per atom (Moller collisions)
    inner_shells: tuple[tuple[int, float], ...] = ()  # (electrons, binding eV below E_F) per inner shell
    band: BandStructure | None = None  # cstool's band structure (penn model, inner-potential barrier)
    elf_file: str | None = None  # optical energy-loss function, datasets/data/elf/<file>

    @property
    def atoms_per_nm3(self) -> float:
        """Number density n = rho N_A / A, converted from cm^-3 to nm^-3."""
        return self.density_g_cm3 * AVOGADRO / self.A * 1e-21


SILICON = Material("Si", Z=14.0, A=28.0855, density_g_cm3=2.329, mott_table="silicon",
                   barrier_eV=7.83 + 1.12 + 4.05, binding_eV=1.12 + 4.05, valence_electrons=4,
                   inner_shells=((6, 99.4), (2, 149.7), (2, 1839.0)),  # L2,3  L1  K
                   band=BandStructure("semiconductor", valence=7.27, band_gap=1.12, affinity=4.05),
                   elf_file="df_Si.dat")
COPPER = Material("Cu", Z=29.0, A=63.546, density_g_cm3=8.96, mott_table="copper",
                  barrier_eV=7.0 + 4.53, binding_eV=4.53, valence_electrons=11,  # 3d10 4s1
                  inner_shells=((6, 75.1), (2, 122.5), (4, 932.7), (2, 952.3), (2, 1096.7), (2, 8979.0)),
                  band=BandStructure("metal", fermi=7.0, work_function=4.53), elf_file="df_Cu.dat")
#                               M2,3       M1          L3          L2          L1           K

#: THE material table: geometry-file id -> material (id 0 is vacuum, never listed). Everything
#: else is derived from it: the ids a geometry may hold, names, Nebula's material indices (the
#: order of the material files on Nebula's command line) and the physics tables. A new material
#: is one row here (and, for the ``mott``/``tabulated`` models, its cross-section file).
MATERIALS: dict[int, Material] = {1: SILICON, 2: COPPER}
#: the material the methods reconstruct (label 1 of the Si-block volume); the block is the
#: first material of the table
TARGET_MATERIAL = "Cu"
VACUUM_ID = 0


def material_ids() -> tuple[int, ...]:
    """Every id a geometry may hold: vacuum and the table's."""
    return (VACUUM_ID, *sorted(MATERIALS))


def materials_by_name() -> dict[str, Material]:
    return {m.name: m for m in MATERIALS.values()}


def material_by_name(name: str) -> Material:
    """Look up a material by symbol (case-insensitive), with a clear error for unknown names."""
    by_lower = {key.lower(): material for key, material in materials_by_name().items()}
    if name.lower() not in by_lower:
        raise unknown_name("material", name, materials_by_name())
    return by_lower[name.lower()]


def material_id(name: str) -> int:
    """The table id of a material symbol (case-insensitive)."""
    material = material_by_name(name)
    return next(i for i, m in MATERIALS.items() if m is material)
