"""Reading a user's voxel geometry file (``.npy`` or ``.tif`` stack of material ids [z, y, x]),
with an error that names the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.scene import BLOCK_Z_NM, COPPER, PAPER_SHAPE_ZYX, validate_geometry

CUSTOM_SUFFIXES = (".npy", ".tif", ".tiff")


def load_custom_geometry(path, expected_shape=PAPER_SHAPE_ZYX) -> np.ndarray:
    """Load and validate a geometry file (``.npy`` or ``.tif``/``.tiff`` stack [z, y, x]).

    Checks, each failing with an error naming the file and the problem: the file exists and
    parses, the array is 3-D with shape ``expected_shape`` (the paper scene, which the trained
    methods expect; ``None`` accepts any 3-D shape), the dtype is integer, every id is a known
    material (0 vacuum, 1 Si, 2 Cu), and Cu lies only inside the Si block (z in [5, 25) nm).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"custom geometry file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in CUSTOM_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported geometry file type {suffix!r}; use one of {list(CUSTOM_SUFFIXES)}"
        )
    if suffix == ".npy":
        with open(path, "rb") as handle:
            if handle.read(6) != b"\x93NUMPY":
                raise ValueError(f"{path}: not a NumPy .npy file (no .npy header); corrupt or another format")
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            import tifffile

            array = tifffile.imread(path)
    except Exception as err:  # numpy and tifffile raise many types on corrupt files
        raise ValueError(f"{path}: cannot read geometry ({type(err).__name__}: {err})") from err
    if array.ndim != 3:
        raise ValueError(
            f"{path}: geometry must be a 3-D [z, y, x] array of material ids, got shape {array.shape}"
        )
    if expected_shape is not None and tuple(array.shape) != tuple(expected_shape):
        raise ValueError(
            f"{path}: geometry shape {array.shape} differs from the paper scene {tuple(expected_shape)} "
            "[z, y, x] (1 nm voxels, Si block z in [5, 25) nm) that the benchmark's trained methods expect"
        )
    if array.dtype.kind not in "iu":
        raise TypeError(f"{path}: geometry must hold integer material ids, got dtype {array.dtype}")
    try:
        geometry = validate_geometry(array, name=str(path))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from err
    z0, z1 = BLOCK_Z_NM
    copper_layers = np.flatnonzero((geometry == COPPER).any(axis=(1, 2)))
    outside = [int(z) for z in copper_layers if not z0 <= z < z1]
    if outside:
        raise ValueError(
            f"{path}: Cu (id {COPPER}) found outside the Si block in z layers {outside}; "
            f"Cu must lie inside the block, z layers {z0}..{z1 - 1}"
        )
    return geometry
