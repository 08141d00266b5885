"""The simulation scene of the paper (section II.A) and the geometry-file convention.

A geometry is an integer array ``[z, y, x]`` of material ids on a grid of cubic voxels
(1 nm by default). Voxel ``[k, j, i]`` covers ``x in [i, i+1)``, ``y in [j, j+1)``,
``z in [k, k+1)`` nm, so its centre is at ``(i + 0.5, j + 0.5, k + 0.5)`` nm. The z axis points
down into the sample:

- the BSE detector is the plane ``z = 0`` nm: an electron moving up through it with kinetic
  energy above the cutoff is counted;
- the beam starts at ``z = 2`` nm and moves along +z (normal incidence) through each pixel centre;
- the Si block fills ``z in [5, 25]`` nm (material id 1) with Cu (id 2) inside it;
- an absorbing terminator at ``z = 26`` nm removes every electron reaching it;
- the lateral faces ``x = 0, X`` and ``y = 0, Y`` are mirrors (reflective boundaries);
- every other voxel is vacuum (id 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.materials import VACUUM_ID, material_id, material_ids  # the one material table

#: ids of the paper scene's materials, from the material table
VACUUM, SILICON, COPPER = VACUUM_ID, material_id("Si"), material_id("Cu")

#: The paper's scene: 26 x 20 x 20 voxels of 1 nm, Si block at z in [5, 25] nm.
PAPER_SHAPE_ZYX = (26, 20, 20)
BLOCK_Z_NM = (5, 25)
DETECTOR_Z_NM = 0.0
BEAM_Z_NM = 2.0
TERMINATOR_Z_NM = 26.0
DEFAULT_ENERGIES_KEV = tuple(round(0.5 * k, 1) for k in range(1, 21))  # 0.5, 1.0, ... 10.0 keV
DEFAULT_CUTOFF_EV = 50.0


@dataclass(frozen=True)
class Scene:
    """Geometry-independent settings of the simulated SEM scene (all lengths in nm).

    ``terminator_z_nm=None`` means no terminator: electrons are followed until they stop or
    leave through the detector plane (used for bulk backscatter coefficients).
    """

    voxel_nm: float = 1.0
    detector_z_nm: float = DETECTOR_Z_NM
    beam_z_nm: float = BEAM_Z_NM
    terminator_z_nm: float | None = TERMINATOR_Z_NM
    mirror_walls: bool = True


def paper_block(copper_mask: np.ndarray | None = None) -> np.ndarray:
    """Return a paper-scene geometry (26, 20, 20) with a Si block at z in [5, 25] nm.

    ``copper_mask`` (20, 20, 20) [z, y, x] marks Cu voxels inside the block.
    """
    geometry = np.zeros(PAPER_SHAPE_ZYX, dtype=np.uint8)
    z0, z1 = BLOCK_Z_NM
    geometry[z0:z1] = SILICON
    if copper_mask is not None:
        copper_mask = np.asarray(copper_mask, dtype=bool)
        if copper_mask.shape != (z1 - z0, *PAPER_SHAPE_ZYX[1:]):
            raise ValueError(
                f"copper mask must have shape {(z1 - z0, *PAPER_SHAPE_ZYX[1:])} [z, y, x], "
                f"got {copper_mask.shape}"
            )
        geometry[z0:z1][copper_mask] = COPPER
    return geometry


def block_labels(geometry: np.ndarray, block_z_nm: tuple[int, int] = BLOCK_Z_NM) -> np.ndarray:
    """Cu mask over the Si block, shape (D, H, W) = (20, 20, 20): the reconstruction target."""
    z0, z1 = block_z_nm
    return (np.asarray(geometry)[z0:z1] == COPPER).astype(np.uint8)


def validate_geometry(geometry, known_ids=None, name="geometry") -> np.ndarray:
    """Check a geometry array and return it as a C-contiguous uint8 array.

    Raises ``ValueError``/``TypeError`` that name the problem: wrong number of dimensions,
    non-integer dtype, NaN, negative or unknown material ids, or an empty grid. ``known_ids``:
    default every id of the material table (``datasets.materials.MATERIALS``) and vacuum.
    """
    known_ids = material_ids() if known_ids is None else tuple(known_ids)
    arr = np.asarray(geometry)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3-D [z, y, x] array of material ids, got shape {arr.shape}")
    if min(arr.shape) == 0:
        raise ValueError(f"{name} has an empty axis: shape {arr.shape}")
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN; material ids must be integers")
        if not np.all(arr == np.round(arr)):
            raise TypeError(f"{name} has non-integer values (dtype {arr.dtype}); material ids must be integers")
    elif arr.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integer material ids, got dtype {arr.dtype}")
    ids = np.unique(arr)
    unknown = sorted(set(ids.tolist()) - set(known_ids))
    if unknown:
        raise ValueError(
            f"{name} contains unknown material ids {unknown}; known ids are {sorted(known_ids)}"
        )
    return np.ascontiguousarray(arr.astype(np.uint8))
