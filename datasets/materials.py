"""Material table: id -> material, with the data the physics models need.

A material is described by an (effective) atomic number ``Z``, atomic weight ``A`` (g/mol) and
mass density (g/cm^3); compounds can be added with effective Z and A. Tabulated Mott cross
sections (``mott_table``) are optional and only needed by the ``mott`` elastic model.
"""

from __future__ import annotations

from dataclasses import dataclass

AVOGADRO = 6.02214076e23


@dataclass(frozen=True)
class Material:
    """A homogeneous material. ``mott_table``: stem of ``datasets/data/<stem>.npz`` (Nebula/ELSEPA)."""

    name: str
    Z: float
    A: float  # g/mol
    density_g_cm3: float
    mott_table: str | None = None

    @property
    def atoms_per_nm3(self) -> float:
        """Number density n = rho N_A / A, converted from cm^-3 to nm^-3."""
        return self.density_g_cm3 * AVOGADRO / self.A * 1e-21


SILICON = Material("Si", Z=14.0, A=28.0855, density_g_cm3=2.329, mott_table="silicon")
COPPER = Material("Cu", Z=29.0, A=63.546, density_g_cm3=8.96, mott_table="copper")

#: Default id -> material map of geometry files (0 is always vacuum).
DEFAULT_MATERIALS: dict[int, Material] = {1: SILICON, 2: COPPER}

MATERIALS_BY_NAME: dict[str, Material] = {"Si": SILICON, "Cu": COPPER}


def material_by_name(name: str) -> Material:
    """Look up a material by symbol (case-insensitive), with a clear error for unknown names."""
    for key, material in MATERIALS_BY_NAME.items():
        if key.lower() == name.lower():
            return material
    raise KeyError(f"unknown material '{name}'; known materials: {', '.join(MATERIALS_BY_NAME)}")
