"""Voxelisers (centre-inside convention) and the random training-geometry generator."""

import json

import numpy as np
import pytest

import datasets.geometry as geometry_module
from datasets.cases import NAMED_CASES, get_case
from datasets.geometry import (
    BLOCK_ORIGIN_NM,
    BLOCK_SHAPE_ZYX,
    box_mask,
    cylinder_mask,
    ellipsoid_mask,
    geometry_from_params,
    random_geometry,
    sphere_mask,
)
from datasets.scene import BLOCK_Z_NM, COPPER, PAPER_SHAPE_ZYX, SILICON, VACUUM, validate_geometry

GRID = (10, 10, 10)


def test_box_includes_centres_on_its_boundary():
    mask = box_mask(GRID, (0.0, 0.0, 0.0), (5.0, 5.0, 5.0))
    assert mask.sum() == 125 and mask[:5, :5, :5].all()
    # a degenerate box through one voxel centre still holds it (boundary included)
    point = box_mask(GRID, (2.5, 3.5, 4.5), (2.5, 3.5, 4.5))
    assert np.argwhere(point).tolist() == [[4, 3, 2]]  # [z, y, x]


def test_sphere_radius_one_at_a_voxel_centre_holds_seven_voxels():
    mask = sphere_mask(GRID, (4.5, 4.5, 4.5), 1.0)
    assert mask.sum() == 7  # the centre and its 6 face neighbours at distance exactly 1
    assert mask[4, 4, 4] and mask[3, 4, 4] and mask[4, 4, 5] and not mask[3, 3, 4]


def test_ellipsoid_and_cylinder_axes_follow_xyz_order():
    ellipsoid = ellipsoid_mask(GRID, (4.5, 4.5, 4.5), (2.0, 0.5, 0.5))
    assert np.argwhere(ellipsoid)[:, 2].tolist() == [2, 3, 4, 5, 6]  # elongated along x only
    wire = cylinder_mask(GRID, (4.5, 4.5, 4.5), 1.0, "x")
    assert wire.sum() == 5 * 10 and wire[4, 4].all() and wire[3, 4].all() and not wire[3, 3].any()
    short = cylinder_mask(GRID, (4.5, 4.5, 4.5), 1.0, "z", length_nm=2.0)
    assert short.sum() == 5 * 3 and set(np.argwhere(short)[:, 0].tolist()) == {3, 4, 5}


def test_origin_shifts_the_grid_into_the_scene_frame():
    mask = box_mask(BLOCK_SHAPE_ZYX, (0, 0, 5), (1, 1, 6), origin_nm=BLOCK_ORIGIN_NM)
    assert np.argwhere(mask).tolist() == [[0, 0, 0]]


def test_bad_primitive_arguments_are_rejected():
    with pytest.raises(ValueError, match="axis"):
        cylinder_mask(GRID, (1, 1, 1), 1.0, "w")
    with pytest.raises(ValueError, match="radius"):
        sphere_mask(GRID, (1, 1, 1), 0.0)
    with pytest.raises(ValueError, match="seed"):
        random_geometry(-1)


def test_random_geometry_is_deterministic_and_rebuildable_from_params():
    geometry, params = random_geometry(123)
    again, params_again = random_geometry(123)
    assert geometry.shape == PAPER_SHAPE_ZYX and geometry.dtype == np.uint8
    assert np.array_equal(geometry, again) and params == params_again
    validate_geometry(geometry)
    restored = json.loads(json.dumps(params))
    assert np.array_equal(geometry_from_params(restored), geometry)
    assert restored["copper_fraction"] == pytest.approx(np.mean(geometry[5:25] == COPPER))
    assert any(not np.array_equal(random_geometry(s)[0], geometry) for s in range(124, 128))


def test_random_geometries_keep_the_scene_and_cover_depths_sizes_and_fractions():
    samples = [random_geometry(seed) for seed in range(600)]
    z0, z1 = BLOCK_Z_NM
    fractions = np.array([p["copper_fraction"] for _, p in samples])
    copper_layers = np.zeros(z1 - z0, dtype=bool)
    top_depths = []
    kinds, axes, counts, extents = set(), set(), set(), []
    for geometry, params in samples:
        assert (geometry[:z0] == VACUUM).all() and (geometry[z1:] == VACUUM).all()
        assert np.isin(geometry[z0:z1], (SILICON, COPPER)).all()
        layers = (geometry[z0:z1] == COPPER).any(axis=(1, 2))
        copper_layers |= layers
        if layers.any():
            top_depths.append(int(np.argmax(layers)))
        counts.add(len(params["primitives"]))
        for primitive in params["primitives"]:
            kinds.add(primitive["kind"])
            axes.add(primitive.get("axis"))
            for key in ("size_nm", "semi_axes_nm", "radius_nm"):
                if key in primitive:
                    scale = 1.0 if key == "size_nm" else 2.0
                    extents.extend(np.ravel(primitive[key]) * scale)
    assert copper_layers.all(), "Cu appears at every depth of the block"
    assert min(top_depths) == 0 and max(top_depths) >= 15, (
        "inclusions start near the top and deep down"
    )
    assert (fractions == 0).mean() > 0.005, "some samples have no Cu"
    assert (fractions > 0.9).mean() > 0.03, "some samples are almost all Cu"
    assert ((fractions > 0.3) & (fractions < 0.8)).any()
    assert kinds == {"box", "sphere", "ellipsoid", "cylinder"} and {"x", "y", "z"} <= axes
    assert counts == {0, 1, 2, 3}
    assert min(extents) < 1.5 and max(extents) > 18.0


def test_generator_never_yields_a_named_case():
    named = {sample.geometry.tobytes() for name in NAMED_CASES for sample in get_case(name)}
    assert len(named) == 14
    assert all(random_geometry(seed)[0].tobytes() not in named for seed in range(3000))


def test_a_draw_equal_to_a_named_case_is_rejected(monkeypatch):
    first, _ = random_geometry(7)
    monkeypatch.setattr(geometry_module, "named_case_keys", lambda: frozenset({first.tobytes()}))
    geometry, params = random_geometry(7)
    assert params["rejected_named_cases"] == 1
    assert not np.array_equal(geometry, first)
