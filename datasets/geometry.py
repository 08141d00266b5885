"""Voxelised primitives and the seeded random generator of training geometries.

The shapes themselves live in :mod:`datasets.shapes` (re-exported here). Voxelisation
convention (every shape): voxel ``[k, j, i]`` of a grid whose corner sits at
``origin_nm`` has its centre at ``origin_nm + ((i + 0.5), (j + 0.5), (k + 0.5)) * voxel_nm``
in (x, y, z) order; the voxel belongs to the shape when its centre lies inside the shape,
boundary included. Points are always given as (x, y, z) in nm in the scene frame of
:mod:`datasets.scene` (z points down into the sample, the Si block fills z in [5, 25] nm).

Training-geometry distribution (:func:`random_geometry`), paper scene 26 x 20 x 20 voxels of 1 nm:

- mode ``empty`` (3 %): a plain Si block, no Cu;
- mode ``inclusions`` (87 %): Cu inclusions in the Si block, union of 1-3 primitives;
- mode ``inverted`` (10 %): a Cu-filled block with 1-3 Si primitives carved out (mostly Cu).

Number of primitives: uniform in {1, 2, 3}. Kind: uniform over box, sphere, ellipsoid, cylinder
(a wire; axis uniform over x, y, z). The extents of a primitive (box edges, sphere/ellipsoid/
cylinder diameters, cylinder length) are drawn, per primitive, either log-uniform in [1, 20] nm
(probability 1/2: small features as often per octave as large ones) or uniform in [1, 20] nm
(large, often clipped features); half of the cylinders are unbounded wires crossing the block. Centres are uniform over the block (x, y in [0, 20],
z in [5, 25] nm), so inclusions appear at every depth and large or off-centre primitives are
clipped by the block. A primitive covering no voxel centre inside the block is redrawn. A sample
whose geometry equals one of the named test cases of :mod:`datasets.cases` is rejected and
redrawn (the count is recorded), so the generator never yields a test case.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from datasets.cases import NAMED_CASES, get_case
from datasets.errors import look_up, unknown_name
from datasets.scene import BLOCK_Z_NM, COPPER, paper_block
from datasets.shapes import (  # noqa: F401 - the shapes live there; re-exported
    AXES,
    BLOCK_ORIGIN_NM,
    BLOCK_SHAPE_ZYX,
    box_mask,
    cylinder_mask,
    ellipsoid_mask,
    sphere_mask,
    voxel_centres_nm,
)

PRIMITIVE_KINDS = ("box", "sphere", "ellipsoid", "cylinder")
MODE_PROBABILITIES = {"empty": 0.03, "inclusions": 0.87, "inverted": 0.10}
MIN_EXTENT_NM, MAX_EXTENT_NM = 1.0, 20.0
LOG_UNIFORM_EXTENT_PROBABILITY = 0.5
UNBOUNDED_WIRE_PROBABILITY = 0.5
MAX_PRIMITIVES = 3



def primitive_mask(
    primitive: dict, shape_zyx=BLOCK_SHAPE_ZYX, voxel_nm: float = 1.0, origin_nm=BLOCK_ORIGIN_NM
) -> np.ndarray:
    """Voxelise one primitive described by a params dict (as stored by :func:`random_geometry`)."""
    kind = primitive["kind"]
    centre = primitive["center_nm"]
    if kind == "box":
        half = np.asarray(primitive["size_nm"], dtype=float) / 2.0
        return box_mask(
            shape_zyx, np.subtract(centre, half), np.add(centre, half), voxel_nm, origin_nm
        )
    if kind == "sphere":
        return sphere_mask(shape_zyx, centre, primitive["radius_nm"], voxel_nm, origin_nm)
    if kind == "ellipsoid":
        return ellipsoid_mask(shape_zyx, centre, primitive["semi_axes_nm"], voxel_nm, origin_nm)
    if kind == "cylinder":
        return cylinder_mask(
            shape_zyx,
            centre,
            primitive["radius_nm"],
            primitive["axis"],
            primitive.get("length_nm"),
            voxel_nm,
            origin_nm,
        )
    raise unknown_name("primitive kind", kind, PRIMITIVE_KINDS)


def geometry_from_params(params: dict) -> np.ndarray:
    """Rebuild a paper-scene geometry (26, 20, 20) uint8 from :func:`random_geometry` params."""
    union = np.zeros(BLOCK_SHAPE_ZYX, dtype=bool)
    for primitive in params["primitives"]:
        union |= primitive_mask(primitive)
    mode = params["mode"]
    look_up("geometry mode", mode, MODE_PROBABILITIES)
    copper = ~union if mode == "inverted" else union
    return paper_block(copper)


def _draw_extents(rng: np.random.Generator, size=None) -> np.ndarray | float:
    """Extents (nm): log-uniform in [1, 20] with probability 1/2, else uniform in [1, 20]."""
    if rng.uniform() < LOG_UNIFORM_EXTENT_PROBABILITY:
        return np.exp(rng.uniform(math.log(MIN_EXTENT_NM), math.log(MAX_EXTENT_NM), size))
    return rng.uniform(MIN_EXTENT_NM, MAX_EXTENT_NM, size)


def _draw_primitive(rng: np.random.Generator) -> dict:
    """One primitive: extents from :func:`_draw_extents`, centre uniform over the block."""
    z0, z1 = BLOCK_Z_NM
    centre = [
        float(rng.uniform(0, BLOCK_SHAPE_ZYX[2])),
        float(rng.uniform(0, BLOCK_SHAPE_ZYX[1])),
        float(rng.uniform(z0, z1)),
    ]
    kind = PRIMITIVE_KINDS[rng.integers(len(PRIMITIVE_KINDS))]
    primitive: dict = {"kind": kind, "center_nm": centre}
    if kind == "box":
        primitive["size_nm"] = [float(v) for v in _draw_extents(rng, 3)]
    elif kind == "sphere":
        primitive["radius_nm"] = float(_draw_extents(rng)) / 2.0
    elif kind == "ellipsoid":
        primitive["semi_axes_nm"] = [float(v) / 2.0 for v in _draw_extents(rng, 3)]
    else:
        primitive["axis"] = AXES[rng.integers(3)]
        primitive["radius_nm"] = float(_draw_extents(rng)) / 2.0
        bounded = rng.uniform() >= UNBOUNDED_WIRE_PROBABILITY
        primitive["length_nm"] = float(_draw_extents(rng)) if bounded else None
    return primitive


@functools.lru_cache(maxsize=1)
def named_case_keys() -> frozenset[bytes]:
    """Raw bytes of every named test-case geometry (default parameters), for rejection."""
    return frozenset(sample.geometry.tobytes() for name in NAMED_CASES for sample in get_case(name))


def random_geometry(seed: int) -> tuple[np.ndarray, dict]:
    """Draw one training geometry of the paper scene from ``numpy.random.default_rng(seed)``.

    Returns ``(geometry (26, 20, 20) uint8, params)``; ``params`` (JSON-serialisable) holds the
    seed, the mode, the primitives (scene-frame nm), the Cu fraction of the block and the number
    of draws rejected because they equalled a named test case. :func:`geometry_from_params`
    rebuilds the geometry from ``params``. The distribution is described in the module docstring.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    modes = list(MODE_PROBABILITIES)
    rejected = 0
    while True:
        mode = modes[rng.choice(len(modes), p=list(MODE_PROBABILITIES.values()))]
        primitives = []
        if mode != "empty":
            for _ in range(int(rng.integers(1, MAX_PRIMITIVES + 1))):
                primitive = _draw_primitive(rng)
                while not primitive_mask(primitive).any():
                    primitive = _draw_primitive(rng)
                primitives.append(primitive)
        params = {"seed": int(seed), "mode": mode, "primitives": primitives}
        geometry = geometry_from_params(params)
        if geometry.tobytes() not in named_case_keys():
            break
        rejected += 1
    copper_fraction = float(np.mean(geometry[BLOCK_Z_NM[0] : BLOCK_Z_NM[1]] == COPPER))
    params.update(copper_fraction=copper_fraction, rejected_named_cases=rejected)
    return geometry, params
