"""The one material table: ids, names, Nebula indices and the physics all derive from it, so a
material added as one row is simulated, validated and exported like Si and Cu."""

from __future__ import annotations

import numpy as np
import pytest

from datasets import materials
from datasets.errors import UnknownNameError
from datasets.materials import (
    COPPER,
    SILICON,
    Material,
    material_by_name,
    material_id,
    material_ids,
)
from datasets.nebula import NEBULA_VACUUM, default_material_indices
from datasets.physics import PhysicsConfig
from datasets.scene import COPPER as COPPER_ID
from datasets.scene import SILICON as SILICON_ID
from datasets.scene import paper_block, validate_geometry
from datasets.simulate import simulate_stack

#: tungsten: Z 74, A 183.84 g/mol, 19.3 g/cm3 (CRC Handbook), 6 valence electrons (5d4 6s2)
TUNGSTEN = Material("W", Z=74.0, A=183.84, density_g_cm3=19.3, barrier_eV=14.0, binding_eV=4.55,
                    valence_electrons=6)


def test_the_scene_ids_come_from_the_table():
    assert (SILICON_ID, COPPER_ID) == (material_id("Si"), material_id("Cu")) == (1, 2)
    assert materials.MATERIALS[SILICON_ID] is SILICON and materials.MATERIALS[COPPER_ID] is COPPER
    assert material_ids() == (0, 1, 2)
    assert default_material_indices() == {0: NEBULA_VACUUM, 1: 0, 2: 1}
    with pytest.raises(UnknownNameError, match="unknown material 'Xx'; known: Si, Cu"):
        material_by_name("Xx")


def test_a_material_added_as_one_row_is_simulated(monkeypatch):
    monkeypatch.setitem(materials.MATERIALS, 3, TUNGSTEN)
    assert material_ids() == (0, 1, 2, 3) and material_by_name("w") is TUNGSTEN
    assert default_material_indices()[3] == 2  # Nebula's third material file
    mask = np.zeros((20, 20, 20), bool)
    mask[:4, :, :10] = True  # a W slab under the surface, left half of the image
    geometry = paper_block()
    geometry[5:25][mask] = 3
    validate_geometry(geometry)  # id 3 is known now
    physics = PhysicsConfig.preset("nebula-like", stopping="joyluo")  # W has no tabulated stopping file
    stack = simulate_stack(geometry, energies_keV=[2.0], simulated_electrons_per_pixel=200, seed=1, physics=physics)
    tungsten_side, silicon_side = stack.bse[0, :, :10].mean(), stack.bse[0, :, 10:].mean()
    assert tungsten_side > silicon_side + 0.15  # Z 74 backscatters far more than Z 14


def test_an_unknown_id_names_the_table(monkeypatch):
    geometry = paper_block()
    geometry[10, 10, 10] = 7
    with pytest.raises(ValueError, match=r"unknown material ids \[7\]; known ids are \[0, 1, 2\]"):
        validate_geometry(geometry)
