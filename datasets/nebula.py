"""Interoperability with Nebula, the GPU Monte Carlo simulator the paper used (ref. [19]).

Formats, as documented on the Nebula project's pages (nebula-simulator.github.io):

- geometry ``.tri`` ("Nebula geometry format", /nebula-format-tri): a text file, one triangle
  per line, 11 numbers ``mat_in mat_out x1 y1 z1 x2 y2 z2 x3 y3 z3`` (nm, right-handed). The
  normal ``(v2 - v1) x (v3 - v1)`` points into ``mat_out``. Material ``n >= 0`` is the n-th
  material file on the command line; special ids: -122 ideal mirror, -123 vacuum, -124 BSE
  detector (detects electrons of 50 eV or more), -125 SE detector, -126 detector (detects every
  electron), -127 terminator (kills every electron moving into it), -128 does nothing.
- electrons ``.pri`` / detector output ("Nebula electron file format", /nebula-format-pri):
  binary records of 7 float32 (x, y, z in nm; direction dx, dy, dz, not necessarily unit; energy
  in eV) then 2 int32 tags, native byte order. Secondaries inherit their primary's tags, so the
  tags carry the pixel indices of a SEM image. Nebula writes the detected electrons, in the same
  record layout, to standard output: ``nebula_gpu geometry.tri beam.pri silicon.hdf5 copper.hdf5 > det.bin``
  ("Running Nebula", /nebula-run).

Coordinates. The suite's scene (:mod:`datasets.scene`) has z pointing down into the sample; the
Nebula examples put the sample below z = 0 with the beam travelling along -z. The export maps
``(x, y, z)_nebula = (x, y, -z)_scene``: the detector plane is z = 0, the beam starts at
z = -2 nm moving along (0, 0, -1), the Si block fills z in [-25, -5] nm and the terminator is the
plane z = -26 nm. Pixel tags are ``px = i`` (x index) and ``py = j`` (y index), so an image
``[j, i]`` of :class:`datasets.stack.BseStack` is ``counts[py, px]``.

Materials: scene id 1 (Si) -> Nebula material 0 and id 2 (Cu) -> material 1, i.e. run Nebula
with the silicon file first and the copper file second; vacuum -> -123.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from datasets.files import atomic_path
from datasets.geometry_files import load_custom_geometry
from datasets.materials import MATERIALS
from datasets.scene import (
    DEFAULT_CUTOFF_EV,
    DEFAULT_ENERGIES_KEV,
    VACUUM,
    Scene,
    validate_geometry,
)
from datasets.stack import BseStack

MIRROR, NEBULA_VACUUM, BSE_DETECTOR, SE_DETECTOR, DETECTOR, TERMINATOR = -122, -123, -124, -125, -126, -127


def default_material_indices() -> dict[int, int]:
    """Scene material id -> Nebula material index, from the material table: the table's
    materials in id order are Nebula's materials 0, 1, ... (the order of the material files on
    its command line: silicon, then copper); vacuum is Nebula's vacuum."""
    return {VACUUM: NEBULA_VACUUM, **{mid: k for k, mid in enumerate(sorted(MATERIALS))}}


#: One Nebula electron record (primary input and detector output alike).
ELECTRON_DTYPE = np.dtype([("x", "=f4"), ("y", "=f4"), ("z", "=f4"), ("dx", "=f4"), ("dy", "=f4"), ("dz", "=f4"),
                           ("E", "=f4"), ("px", "=i4"), ("py", "=i4")])


def to_nebula_xyz(points_scene_nm: np.ndarray) -> np.ndarray:
    """Map scene (x, y, z-down) points (nm) to Nebula's frame (x, y, z-up): z -> -z."""
    points = np.array(points_scene_nm, dtype=np.float64)
    points[..., 2] *= -1.0
    return points


def _check_scene_planes(geometry: np.ndarray, scene: Scene) -> None:
    depth_nm = geometry.shape[0] * scene.voxel_nm
    if scene.detector_z_nm != 0.0:
        raise ValueError(
            f"Nebula export puts the detector on the grid's top face z = 0 nm; scene has {scene.detector_z_nm}"
        )
    if scene.terminator_z_nm is not None and not np.isclose(scene.terminator_z_nm, depth_nm):
        raise ValueError(
            f"Nebula export puts the terminator on the grid's bottom face z = {depth_nm} nm; "
            f"scene has {scene.terminator_z_nm}"
        )
    if not 0.0 < scene.beam_z_nm < depth_nm:
        raise ValueError(
            f"beam start z = {scene.beam_z_nm} nm lies outside the grid [0, {depth_nm}] nm"
        )


def voxel_interface_triangles(
    geometry: np.ndarray,
    scene: Scene = Scene(),
    material_indices: dict | None = None,
    detector: int = DETECTOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of every material interface of a voxel geometry, in Nebula's frame.

    Each voxel face between two different materials gives two triangles; the outer faces of the
    grid meet the detector (top, z = 0), the terminator (bottom; vacuum when
    ``scene.terminator_z_nm`` is None) and the mirror walls (lateral faces; vacuum when
    ``scene.mirror_walls`` is False). Orientation: the inner material of a face is the one nested
    deeper (Cu inside Si inside vacuum inside the scene boundaries), so every closed body has
    outward normals, ``mat_in`` is the body and ``mat_out`` its surrounding.

    Returns ``materials`` (N, 2) int32 ``[mat_in, mat_out]`` and ``vertices`` (N, 3, 3) float64
    (triangle, vertex, xyz nm).
    """
    geometry = validate_geometry(
        geometry, known_ids=tuple((material_indices or default_material_indices()).keys())
    )
    _check_scene_planes(geometry, scene)
    mapping = dict(material_indices or default_material_indices())
    lookup = np.zeros(256, dtype=np.int32)
    for scene_id, nebula_id in mapping.items():
        lookup[scene_id] = nebula_id
    nebula_ids = lookup[geometry]
    nesting = geometry.astype(np.int32)  # deeper nesting = larger scene id; boundaries get -1
    top, bottom = detector, TERMINATOR if scene.terminator_z_nm is not None else NEBULA_VACUUM
    wall = MIRROR if scene.mirror_walls else NEBULA_VACUUM

    materials, vertices = [], []
    for axis, (before, after) in enumerate([(top, bottom), (wall, wall), (wall, wall)]):
        pad = [(0, 0)] * 3
        pad[axis] = (1, 1)
        ids = np.pad(nebula_ids, pad, constant_values=0)
        ranks = np.pad(nesting, pad, constant_values=-1)
        first = [slice(None)] * 3
        first[axis] = 0
        last = [slice(None)] * 3
        last[axis] = -1
        ids[tuple(first)], ids[tuple(last)] = before, after
        ids_a, ids_b = np.moveaxis(ids, axis, 0)[:-1], np.moveaxis(ids, axis, 0)[1:]
        rank_a, rank_b = np.moveaxis(ranks, axis, 0)[:-1], np.moveaxis(ranks, axis, 0)[1:]
        faces = np.argwhere(ids_a != ids_b)  # (plane index along axis, two other indices)
        if len(faces) == 0:
            continue
        sel = tuple(faces.T)
        a_inner = rank_a[sel] >= rank_b[sel]
        mat_in = np.where(a_inner, ids_a[sel], ids_b[sel])
        mat_out = np.where(a_inner, ids_b[sel], ids_a[sel])
        # normal in the scene frame: +axis (from cell a to cell b) when a is the inner material
        scene_normal_sign = np.where(a_inner, 1.0, -1.0)
        materials.append(np.stack([mat_in, mat_out], axis=1))
        vertices.append(_face_triangles(faces, axis, scene_normal_sign, scene.voxel_nm))
    if not materials:
        return np.zeros((0, 2), np.int32), np.zeros((0, 3, 3))
    materials = np.repeat(np.concatenate(materials), 2, axis=0).astype(np.int32)
    return materials, np.concatenate(vertices)


def _face_triangles(
    faces: np.ndarray, axis: int, scene_normal_sign: np.ndarray, voxel_nm: float
) -> np.ndarray:
    """Two Nebula-frame triangles per square voxel face, wound so the normal has the given sign.

    ``faces`` rows are (plane index, index of the other two axes) in the axis-first layout used
    by :func:`voxel_interface_triangles`; ``axis`` is the [z, y, x] array axis normal to them.
    """
    others = [a for a in range(3) if a != axis]
    n = len(faces)
    corners = np.zeros((n, 4, 3))  # [z, y, x] array-index coordinates of the square's corners
    corners[:, :, axis] = faces[:, [0]]
    for corner, (du, dv) in enumerate([(0, 0), (1, 0), (1, 1), (0, 1)]):
        corners[:, corner, others[0]] = faces[:, 1] + du
        corners[:, corner, others[1]] = faces[:, 2] + dv
    scene_xyz = corners[..., ::-1] * voxel_nm  # [z, y, x] -> (x, y, z) nm
    xyz = to_nebula_xyz(scene_xyz)
    triangles = np.stack([xyz[:, [0, 1, 2]], xyz[:, [0, 2, 3]]], axis=1)  # (n, 2, 3 vertices, 3)
    wanted = np.zeros((n, 3))
    wanted[:, 2 - axis] = scene_normal_sign * (
        -1.0 if axis == 0 else 1.0
    )  # z flips in Nebula's frame
    normals = np.cross(
        triangles[:, :, 1] - triangles[:, :, 0], triangles[:, :, 2] - triangles[:, :, 0]
    )
    flip = np.einsum("ntk,nk->nt", normals, wanted) < 0
    swapped = triangles[..., [0, 2, 1], :]
    triangles = np.where(flip[..., None, None], swapped, triangles)
    return triangles.reshape(2 * n, 3, 3)


def export_tri(
    geometry: np.ndarray,
    path,
    scene: Scene = Scene(),
    material_indices: dict | None = None,
    detector: int = DETECTOR,
) -> Path:
    """Write a voxel geometry with the scene's detector, terminator and mirror walls as ``.tri``.

    ``detector`` is -126 (detect every electron; the cutoff is applied on import, default) or
    -124 (Nebula's BSE detector, fixed 50 eV cutoff). See :func:`voxel_interface_triangles`.
    """
    materials, vertices = voxel_interface_triangles(geometry, scene, material_indices, detector)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        for (mat_in, mat_out), triangle in zip(materials, vertices):
            coords = " ".join(f"{v:.9g}" for v in triangle.ravel())
            handle.write(f"{mat_in} {mat_out} {coords}\n")
    return path


def read_tri(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``.tri`` file into ``materials`` (N, 2) int32 and ``vertices`` (N, 3, 3) float64."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Nebula geometry file not found: {path}")
    materials, vertices = [], []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 11:
                    raise ValueError(f"expected 11 numbers, got {len(fields)}")
                materials.append([int(fields[0]), int(fields[1])])
                vertices.append([float(v) for v in fields[2:]])
            except ValueError as err:
                raise ValueError(f"{path}, line {number}: malformed triangle ({err})") from err
    return np.array(materials, np.int32).reshape(-1, 2), np.array(vertices).reshape(-1, 3, 3)


def beam_raster(
    energy_keV: float, simulated_electrons_per_pixel: int, shape=(20, 20), scene: Scene = Scene()
) -> np.ndarray:
    """Primary electrons of a raster scan: ``simulated_electrons_per_pixel`` per pixel centre, tagged (i, j).

    Normal incidence from the beam plane: position ((i + 0.5) v, (j + 0.5) v, -beam_z) nm with
    v the voxel size, direction (0, 0, -1), energy in eV. Records are ordered pixel by pixel
    (rows j, then columns i).
    """
    if not np.isfinite(energy_keV) or energy_keV <= 0:
        raise ValueError(f"beam energy must be finite and positive (keV), got {energy_keV}")
    if int(simulated_electrons_per_pixel) != simulated_electrons_per_pixel or simulated_electrons_per_pixel < 1:
        raise ValueError(
            f"electrons_per_pixel must be a positive integer, got {simulated_electrons_per_pixel}"
        )
    height, width = shape
    j, i = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    records = np.zeros((height, width, int(simulated_electrons_per_pixel)), dtype=ELECTRON_DTYPE)
    records["x"] = ((i + 0.5) * scene.voxel_nm)[..., None]
    records["y"] = ((j + 0.5) * scene.voxel_nm)[..., None]
    records["z"] = -scene.beam_z_nm
    records["dz"] = -1.0
    records["E"] = energy_keV * 1000.0
    records["px"] = i[..., None]
    records["py"] = j[..., None]
    return records.ravel()


def write_electrons(path, records: np.ndarray) -> Path:
    """Write electron records (:data:`ELECTRON_DTYPE`) as a raw Nebula electron file, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        np.asarray(records, dtype=ELECTRON_DTYPE).tofile(tmp)
    return path


def read_electrons(path) -> np.ndarray:
    """Read a Nebula electron file (primaries or detector output) into :data:`ELECTRON_DTYPE` records."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Nebula electron file not found: {path}")
    size = path.stat().st_size
    if size % ELECTRON_DTYPE.itemsize:
        raise ValueError(
            f"{path}: size {size} bytes is not a multiple of the {ELECTRON_DTYPE.itemsize}-byte electron "
            "record (truncated or not a Nebula electron file)"
        )
    return np.fromfile(path, dtype=ELECTRON_DTYPE)


def _energy_list(energies_keV) -> list[float]:
    energies = np.atleast_1d(np.asarray(energies_keV, dtype=np.float64))
    if energies.ndim != 1 or len(energies) == 0:
        raise ValueError(
            f"energies_keV must be one energy or a 1-D list of energies, got {energies_keV!r}"
        )
    if not np.all(np.isfinite(energies)) or np.any(energies <= 0):
        raise ValueError(f"energies_keV must be finite and positive, got {energies.tolist()}")
    return energies.tolist()


def pri_filename(energy_keV: float) -> str:
    """File name of the beam raster at one energy, e.g. ``beam_0.5keV.pri``."""
    return f"beam_{energy_keV:g}keV.pri"


def export_pri(
    path, energies_keV, simulated_electrons_per_pixel: int, shape=(20, 20), scene: Scene = Scene()
) -> list[Path]:
    """Write the beam raster as ``.pri`` primaries: one file per energy (Nebula runs one beam energy).

    One energy: written to ``path``. Several: ``path`` is a directory receiving
    :func:`pri_filename` files. Returns the written paths in energy order.
    """
    energies = _energy_list(energies_keV)
    path = Path(path)
    if np.ndim(energies_keV) == 0:
        return [write_electrons(path, beam_raster(energies[0], simulated_electrons_per_pixel, shape, scene))]
    return [
        write_electrons(path / pri_filename(e), beam_raster(e, simulated_electrons_per_pixel, shape, scene))
        for e in energies
    ]


def count_detected(
    records: np.ndarray, shape=(20, 20), cutoff_eV: float = DEFAULT_CUTOFF_EV, source="records"
) -> np.ndarray:
    """Detected electrons per pixel ``counts[py, px]`` with kinetic energy >= ``cutoff_eV``."""
    height, width = shape
    if not np.all(np.isfinite(records["E"])):
        raise ValueError(f"{source}: electron energies contain NaN or infinite values")
    kept = records[records["E"] >= cutoff_eV]
    outside = (kept["px"] < 0) | (kept["px"] >= width) | (kept["py"] < 0) | (kept["py"] >= height)
    if outside.any():
        bad = kept[outside][0]
        raise ValueError(
            f"{source}: pixel tag (px={bad['px']}, py={bad['py']}) outside the image shape (H, W) = {tuple(shape)}"
        )
    flat = kept["py"].astype(np.int64) * width + kept["px"]
    return np.bincount(flat, minlength=height * width).reshape(height, width)


def import_detector_output(
    paths,
    energies_keV,
    simulated_electrons_per_pixel: int,
    shape=(20, 20),
    cutoff_eV: float = DEFAULT_CUTOFF_EV,
) -> BseStack:
    """Build a :class:`BseStack` from Nebula detector output files, one file per beam energy.

    ``paths`` is one path or a sequence aligned with ``energies_keV``; electrons with energy
    >= ``cutoff_eV`` are counted per pixel tag and divided by ``simulated_electrons_per_pixel``. Energies
    are sorted increasingly (files follow).
    """
    energies = _energy_list(energies_keV)
    paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if len(paths) != len(energies):
        raise ValueError(f"got {len(paths)} detector files for {len(energies)} energies {energies}")
    if int(simulated_electrons_per_pixel) != simulated_electrons_per_pixel or simulated_electrons_per_pixel < 1:
        raise ValueError(
            f"electrons_per_pixel must be a positive integer, got {simulated_electrons_per_pixel}"
        )
    order = np.argsort(energies)
    counts = np.stack(
        [
            count_detected(read_electrons(paths[k]), shape, cutoff_eV, source=str(paths[k]))
            for k in order
        ]
    )
    return BseStack(
        bse=counts / float(simulated_electrons_per_pixel),
        energies_keV=np.asarray(energies)[order],
        counts=counts,
        simulated_electrons_per_pixel=int(simulated_electrons_per_pixel),
        cutoff_eV=float(cutoff_eV),
        meta={"simulator": "nebula", "detector_files": [str(paths[k]) for k in order]},
    )


def _parse_energies(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(
            f"--energies must be comma-separated numbers in keV, got {text!r}"
        ) from err


def _export_command(args) -> int:
    geometry = load_custom_geometry(args.geometry, expected_shape=None)
    out = Path(args.out)
    tri = export_tri(geometry, out / f"{Path(args.geometry).stem}.tri", detector=args.detector)
    print(tri)
    energies = _parse_energies(args.energies)
    for pri, energy in zip(
        export_pri(out, energies, args.electrons_per_pixel, shape=geometry.shape[1:]), energies
    ):
        print(pri)
        print(
            f"  run: nebula_gpu {tri.name} {pri.name} silicon.hdf5 copper.hdf5 > det_{energy:g}keV.bin"
        )
    return 0


def _import_command(args) -> int:
    height, width = (int(v) for v in args.shape.split(","))
    stack = import_detector_output(
        args.detector_files,
        _parse_energies(args.energies),
        args.electrons_per_pixel,
        (height, width),
        args.cutoff_eV,
    )
    print(stack.save(args.out))
    return 0


def register_cli(subparsers) -> None:
    """Add ``nebula-export`` and ``nebula-import`` to ``python -m datasets``."""
    default_energies = ",".join(f"{e:g}" for e in DEFAULT_ENERGIES_KEV)
    export = subparsers.add_parser(
        "nebula-export",
        help="write a geometry file as Nebula .tri plus the beam raster as .pri files",
        description="Write GEOMETRY (.npy/.tif, ids 0 vacuum 1 Si 2 Cu) as OUT/<stem>.tri with detector, "
        "terminator and mirror walls, and one beam_<E>keV.pri per energy. Run Nebula with the silicon "
        "material file first and the copper file second.",
    )
    export.add_argument("geometry", type=Path)
    export.add_argument("--out", required=True, type=Path)
    export.add_argument(
        "--energies", default=default_energies, help="comma-separated keV (default: the paper's 20)"
    )
    export.add_argument("--electrons-per-pixel", type=int, default=1000)
    export.add_argument(
        "--detector",
        type=int,
        choices=[DETECTOR, BSE_DETECTOR],
        default=DETECTOR,
        help="-126 detect all (cutoff applied on import) or -124 Nebula's 50 eV BSE detector",
    )
    export.set_defaults(func=_export_command)

    imp = subparsers.add_parser(
        "nebula-import",
        help="turn Nebula detector output files (one per energy) into a BSE stack .npz",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    imp.add_argument("detector_files", nargs="+", type=Path)
    imp.add_argument("--energies", required=True, help="comma-separated keV, one per detector file")
    imp.add_argument("--electrons-per-pixel", type=int, required=True)
    imp.add_argument("--out", required=True, type=Path, help="output stack .npz")
    imp.add_argument("--shape", default="20,20", help="image H,W")
    imp.add_argument("--cutoff-eV", dest="cutoff_eV", type=float, default=DEFAULT_CUTOFF_EV)
    imp.set_defaults(func=_import_command)
