"""Voxelised primitive shapes (box, ellipsoid, sphere, cylinder) and the Si block's grid.

Voxelisation convention (every shape): voxel ``[k, j, i]`` of a grid whose corner sits at
``origin_nm`` has its centre at ``origin_nm + ((i + 0.5), (j + 0.5), (k + 0.5)) * voxel_nm``
in (x, y, z) order; the voxel belongs to the shape when its centre lies inside the shape,
boundary included. Points are (x, y, z) in nm in the scene frame of :mod:`datasets.scene`.
Used by the named cases (:mod:`datasets.cases`) and the random geometries
(:mod:`datasets.geometry`).
"""

from __future__ import annotations

import numpy as np

from datasets.scene import BLOCK_Z_NM, PAPER_SHAPE_ZYX

AXES = ("x", "y", "z")

#: Grid of the Si block in the paper scene: (20, 20, 20) voxels whose corner is at z = 5 nm.
BLOCK_SHAPE_ZYX = (BLOCK_Z_NM[1] - BLOCK_Z_NM[0], *PAPER_SHAPE_ZYX[1:])
BLOCK_ORIGIN_NM = (0.0, 0.0, float(BLOCK_Z_NM[0]))


def voxel_centres_nm(shape_zyx, voxel_nm: float = 1.0, origin_nm=(0.0, 0.0, 0.0)):
    """Open grids ``(x, y, z)`` of voxel-centre coordinates (nm), broadcastable to ``shape_zyx``."""
    nz, ny, nx = shape_zyx
    ox, oy, oz = origin_nm
    x = ox + (np.arange(nx) + 0.5) * voxel_nm
    y = oy + (np.arange(ny) + 0.5) * voxel_nm
    z = oz + (np.arange(nz) + 0.5) * voxel_nm
    return x[None, None, :], y[None, :, None], z[:, None, None]


def box_mask(
    shape_zyx, low_nm, high_nm, voxel_nm: float = 1.0, origin_nm=(0.0, 0.0, 0.0)
) -> np.ndarray:
    """Voxels whose centre lies in the axis-aligned box ``low_nm <= (x, y, z) <= high_nm``."""
    mask = np.ones(shape_zyx, dtype=bool)
    for coord, low, high in zip(voxel_centres_nm(shape_zyx, voxel_nm, origin_nm), low_nm, high_nm):
        mask &= (coord >= low) & (coord <= high)
    return mask


def ellipsoid_mask(
    shape_zyx, center_nm, semi_axes_nm, voxel_nm: float = 1.0, origin_nm=(0.0, 0.0, 0.0)
) -> np.ndarray:
    """Voxels whose centre satisfies sum(((p - c) / a)^2) <= 1 (axis-aligned ellipsoid)."""
    total = np.zeros(shape_zyx, dtype=np.float64)
    for coord, centre, semi in zip(
        voxel_centres_nm(shape_zyx, voxel_nm, origin_nm), center_nm, semi_axes_nm
    ):
        if semi <= 0:
            raise ValueError(f"ellipsoid semi-axes must be positive, got {list(semi_axes_nm)}")
        total = total + ((coord - centre) / semi) ** 2
    return total <= 1.0


def sphere_mask(
    shape_zyx, center_nm, radius_nm: float, voxel_nm: float = 1.0, origin_nm=(0.0, 0.0, 0.0)
) -> np.ndarray:
    """Voxels whose centre lies within ``radius_nm`` of ``center_nm``."""
    if radius_nm <= 0:
        raise ValueError(f"sphere radius must be positive, got {radius_nm}")
    x, y, z = voxel_centres_nm(shape_zyx, voxel_nm, origin_nm)
    cx, cy, cz = center_nm
    return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= radius_nm**2


def cylinder_mask(
    shape_zyx,
    center_nm,
    radius_nm: float,
    axis: str,
    length_nm: float | None = None,
    voxel_nm: float = 1.0,
    origin_nm=(0.0, 0.0, 0.0),
) -> np.ndarray:
    """Voxels inside a circular cylinder (wire) along ``axis`` ("x", "y" or "z").

    The axis passes through ``center_nm``; ``length_nm=None`` makes it unbounded (clipped only by
    the grid), otherwise it spans ``center +- length_nm / 2`` along the axis.
    """
    if axis not in AXES:
        raise ValueError(f"cylinder axis must be one of {AXES}, got {axis!r}")
    if radius_nm <= 0:
        raise ValueError(f"cylinder radius must be positive, got {radius_nm}")
    coords = voxel_centres_nm(shape_zyx, voxel_nm, origin_nm)
    along = AXES.index(axis)
    across = [a for a in range(3) if a != along]
    r2 = sum((coords[a] - center_nm[a]) ** 2 for a in across)
    mask = np.broadcast_to(r2 <= radius_nm**2, shape_zyx)
    if length_nm is not None:
        half = length_nm / 2.0
        mask = mask & (np.abs(coords[along] - center_nm[along]) <= half)
    return np.array(mask, dtype=bool)
