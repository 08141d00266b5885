"""The paper's named test cases, custom geometry files, and ``python -m datasets export-case``.

Named cases (paper scene, 26 x 20 x 20 voxels of 1 nm, Si block z in [5, 25] nm):

- ``nanocube`` (paper III.A, Fig. 6, Table 3): the 20 nm Si cube holds a 5 nm Cu cube at four
  positions along the diagonal; position k = 1..4 spans x, y in [(k-1)*5, (k-1)*5 + 5] nm and
  lies (k-1)*5 nm below the Si top surface, z in [5 + (k-1)*5, 10 + (k-1)*5] nm. Samples
  ``position1`` .. ``position4``, 125 Cu voxels each.
- ``nanowire`` (paper III.B, Fig. 9, Table 4): a cylindrical Cu core of radius 2, 4, 6, 8, 10 nm,
  axis along y through x = 10 nm, z = 15 nm (the block centre), spanning the whole block.
  ``axis="z"`` gives the vertical variant (axis along z through x = y = 10 nm), also registered
  as ``nanowire_vertical``. Samples ``radius2nm`` .. ``radius10nm``.

A custom case is any geometry file (``.npy`` or ``.tif``/``.tiff`` stack) validated by
:func:`load_custom_geometry`; ``get_case("custom:PATH")`` wraps it as a one-sample case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.errors import unknown_name
from datasets.files import atomic_path
from datasets.geometry_files import CUSTOM_SUFFIXES, load_custom_geometry  # noqa: F401 - re-exported
from datasets.nebula import export_tri
from datasets.sample_ids import REPEAT_SEPARATOR, repeat_id, split_repeat  # noqa: F401 (re-exported)
from datasets.scene import (
    BLOCK_Z_NM,
    block_labels,
    paper_block,
)
from datasets.shapes import BLOCK_ORIGIN_NM, BLOCK_SHAPE_ZYX, box_mask, cylinder_mask

CUSTOM_PREFIX = "custom:"
@dataclass
class CaseSample:
    """One geometry of a test case; ``params`` (JSON-serialisable) describes how it was built."""

    name: str
    geometry: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def label(self) -> np.ndarray:
        """Cu mask over the Si block, (20, 20, 20) uint8: the reconstruction target."""
        return block_labels(self.geometry)


def nanocube(cube_nm: float = 5.0) -> list[CaseSample]:
    """Paper III.A: a 5 nm Cu cube at four positions along the block diagonal (Fig. 6)."""
    samples = []
    for k in range(1, 5):
        offset = (k - 1) * cube_nm
        low = (offset, offset, BLOCK_Z_NM[0] + offset)
        high = (offset + cube_nm, offset + cube_nm, BLOCK_Z_NM[0] + offset + cube_nm)
        copper = box_mask(BLOCK_SHAPE_ZYX, low, high, origin_nm=BLOCK_ORIGIN_NM)
        params = {
            "case": "nanocube",
            "position": k,
            "cube_nm": cube_nm,
            "depth_nm": offset,
            "low_nm": list(low),
            "high_nm": list(high),
        }
        samples.append(CaseSample(f"position{k}", paper_block(copper), params))
    return samples


def nanowire(axis: str = "y", radii_nm=(2, 4, 6, 8, 10)) -> list[CaseSample]:
    """Paper III.B: a Cu core of each radius through the block centre, along y (or z) (Fig. 9)."""
    if axis not in ("y", "z"):
        raise ValueError(
            f"nanowire axis must be 'y' (horizontal, as in the paper) or 'z' (vertical), got {axis!r}"
        )
    centre = (10.0, 10.0, (BLOCK_Z_NM[0] + BLOCK_Z_NM[1]) / 2.0)
    samples = []
    for radius in radii_nm:
        if radius <= 0:
            raise ValueError(f"nanowire radii must be positive, got {list(radii_nm)}")
        copper = cylinder_mask(
            BLOCK_SHAPE_ZYX, centre, float(radius), axis, origin_nm=BLOCK_ORIGIN_NM
        )
        params = {
            "case": "nanowire",
            "radius_nm": float(radius),
            "axis": axis,
            "center_nm": list(centre),
        }
        samples.append(CaseSample(f"radius{radius:g}nm", paper_block(copper), params))
    return samples


def nanowire_vertical(radii_nm=(2, 4, 6, 8, 10)) -> list[CaseSample]:
    """The nanowire case with the core axis along z (vertical)."""
    return nanowire(axis="z", radii_nm=radii_nm)


NAMED_CASES: dict[str, Callable[..., list[CaseSample]]] = {
    "nanocube": nanocube,
    "nanowire": nanowire,
    "nanowire_vertical": nanowire_vertical,
}


def available_cases() -> list[str]:
    """Names accepted by :func:`get_case` (besides ``custom:PATH``)."""
    return list(NAMED_CASES)


def get_case(name: str, **params) -> list[CaseSample]:
    """Samples of a named case (``params`` go to its builder) or of ``custom:PATH``."""
    if name.startswith(CUSTOM_PREFIX):
        if params:
            raise TypeError(f"custom cases take no parameters, got {sorted(params)}")
        return custom_case(name[len(CUSTOM_PREFIX) :])
    if name not in NAMED_CASES:
        raise unknown_name("case", name, [*available_cases(), "custom:PATH"])
    try:
        return NAMED_CASES[name](**params)
    except TypeError as err:
        raise TypeError(f"bad parameters {params} for case {name!r}: {err}") from err


def custom_case(path) -> list[CaseSample]:
    """A one-sample case from a geometry file; the sample is named after the file stem."""
    path = Path(path)
    geometry = load_custom_geometry(path)
    return [CaseSample(path.stem, geometry, {"case": "custom", "file": str(path)})]


def export_case(name: str, out_dir, **params) -> list[Path]:
    """Write each sample of a case as ``<case>_<sample>.npy`` (geometry [z, y, x] uint8)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    case_stem = Path(name[len(CUSTOM_PREFIX) :]).stem if name.startswith(CUSTOM_PREFIX) else name
    paths = []
    for sample in get_case(name, **params):
        path = out_dir / f"{case_stem}_{sample.name}.npy"
        with atomic_path(path, fsync=False) as tmp, open(tmp, "wb") as handle:
            np.save(handle, sample.geometry)
        paths.append(path)
    return paths


def _export_case_command(args) -> int:
    paths = export_case(args.name, args.out)
    for path in paths:
        print(path)
    if args.nebula:
        for path in paths:
            print(export_tri(np.load(path), path.with_suffix(".tri")))
    return 0


def register_cli(subparsers) -> None:
    """Add ``export-case``."""
    parser = subparsers.add_parser(
        "export-case",
        help="write each geometry of a named case as <case>_<sample>.npy",
        description="Write each geometry of a test case as <case>_<sample>.npy [z, y, x] uint8 "
        f"(ids 0 vacuum, 1 Si, 2 Cu). Cases: {', '.join(available_cases())}, custom:PATH.",
    )
    parser.add_argument("name", help="case name")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--nebula", action="store_true", help="also write each geometry as a Nebula .tri file"
    )
    parser.set_defaults(func=_export_case_command)
