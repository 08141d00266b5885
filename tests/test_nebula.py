"""Nebula interop: .tri export (hand-checked triangles), .pri round trip, detector-output import."""

import argparse
from collections import Counter

import numpy as np
import pytest

from datasets import nebula
from datasets.nebula import (
    DETECTOR,
    ELECTRON_DTYPE,
    MIRROR,
    NEBULA_VACUUM,
    TERMINATOR,
    beam_raster,
    export_pri,
    export_tri,
    import_detector_output,
    read_electrons,
    read_tri,
    voxel_interface_triangles,
    write_electrons,
)
from datasets.scene import Scene, paper_block
from datasets.stack import BseStack

SI, CU = 0, 1  # Nebula material indices: silicon file first, copper file second


def single_cu_voxel():
    """Cu at block voxel [3, 4, 5] [z, y, x]: scene x in [5, 6], y in [4, 5], z in [8, 9] nm."""
    copper = np.zeros((20, 20, 20), dtype=bool)
    copper[3, 4, 5] = True
    return paper_block(copper)


def normals(vertices):
    """Nebula's triangle normal (v2 - v1) x (v3 - v1) (nebula-format-tri)."""
    return np.cross(vertices[:, 1] - vertices[:, 0], vertices[:, 2] - vertices[:, 0])


def directed_edges(vertices):
    return Counter(
        (tuple(tri[a]), tuple(tri[(a + 1) % 3]))
        for tri in vertices.round(6).tolist()
        for a in range(3)
    )


def assert_closed_outward(vertices):
    """Every edge is shared by exactly two triangles, traversed in opposite directions."""
    edges = directed_edges(vertices)
    for (a, b), count in edges.items():
        assert count == 1 and edges.get((b, a)) == 1, (
            f"edge {a}->{b} is not shared by exactly two triangles"
        )


def boundary_of(materials, vertices, material):
    """Triangles bounding one material, oriented with normals pointing out of it."""
    inner = materials[:, 0] == material
    outer = materials[:, 1] == material
    return np.concatenate([vertices[inner], vertices[outer][:, [0, 2, 1]]])


def test_single_cu_voxel_gives_twelve_hand_checked_triangles():
    materials, vertices = voxel_interface_triangles(single_cu_voxel())
    cu = materials[:, 0] == CU
    assert cu.sum() == 12 and (materials[cu, 1] == SI).all()
    assert not (materials[:, 1] == CU).any()
    cube = vertices[cu]
    # Nebula frame: z -> -z, so the voxel spans x 5..6, y 4..5, z -9..-8
    corners = {(x, y, z) for x in (5.0, 6.0) for y in (4.0, 5.0) for z in (-9.0, -8.0)}
    assert {tuple(v) for v in cube.reshape(-1, 3).tolist()} == corners
    n = normals(cube)
    areas = np.linalg.norm(n, axis=1) / 2
    assert np.allclose(areas, 0.5) and areas.sum() == pytest.approx(6.0)
    outward = cube.mean(axis=1) - np.array([5.5, 4.5, -8.5])
    assert (np.einsum("nk,nk->n", n, outward) > 0).all(), (
        "normals point out of Cu, into mat_out = Si"
    )
    top = cube[np.all(cube[:, :, 2] == -8.0, axis=1)]
    assert len(top) == 2 and np.allclose(normals(top), [[0, 0, 1], [0, 0, 1]])
    assert {tuple(v) for v in top.reshape(-1, 3).tolist()} == {
        (5, 4, -8),
        (6, 4, -8),
        (6, 5, -8),
        (5, 5, -8),
    }
    assert_closed_outward(cube)


def test_scene_boundaries_detector_terminator_and_mirrors():
    materials, vertices = voxel_interface_triangles(single_cu_voxel())
    counts = Counter(map(tuple, materials.tolist()))
    assert counts == {
        (SI, MIRROR): 20 * 20 * 4 * 2,  # 20 Si layers x 20 faces x 4 walls x 2 triangles
        (SI, NEBULA_VACUUM): 2 * 400 * 2,  # top and bottom face of the block
        (NEBULA_VACUUM, MIRROR): 6 * 20 * 4 * 2,  # 6 vacuum layers
        (NEBULA_VACUUM, DETECTOR): 800,
        (NEBULA_VACUUM, TERMINATOR): 800,
        (CU, SI): 12,
    }
    n = normals(vertices)
    detector = materials[:, 1] == DETECTOR
    assert (vertices[detector][:, :, 2] == 0).all() and (n[detector][:, 2] > 0).all()
    terminator = materials[:, 1] == TERMINATOR
    assert (vertices[terminator][:, :, 2] == -26).all() and (n[terminator][:, 2] < 0).all()
    mirror = materials[:, 1] == MIRROR
    centroids = vertices[mirror].mean(axis=1)
    on_wall = np.isclose(centroids[:, :2], 0) | np.isclose(centroids[:, :2], 20)
    assert on_wall.any(axis=1).all()
    outward = np.where(
        np.isclose(centroids[:, :2], 20), 1.0, np.where(np.isclose(centroids[:, :2], 0), -1.0, 0.0)
    )
    assert (np.einsum("nk,nk->n", n[mirror][:, :2], outward) > 0).all(), (
        "mirror normals face out of the box"
    )
    si_top = (materials[:, 1] == NEBULA_VACUUM) & np.all(vertices[:, :, 2] == -5, axis=1)
    assert si_top.sum() == 800 and (n[si_top][:, 2] > 0).all()
    for material in (SI, CU, NEBULA_VACUUM):
        assert_closed_outward(boundary_of(materials, vertices, material))


def test_random_geometry_material_surfaces_are_closed():
    from datasets.geometry import random_geometry

    geometry, _ = random_geometry(11)
    materials, vertices = voxel_interface_triangles(
        geometry, Scene(mirror_walls=False, terminator_z_nm=None)
    )
    assert not np.isin(materials, [MIRROR, TERMINATOR]).any()
    for material in (SI, CU):
        assert_closed_outward(boundary_of(materials, vertices, material))


def test_tri_file_round_trip(tmp_path):
    path = export_tri(single_cu_voxel(), tmp_path / "cube.tri")
    lines = path.read_text().splitlines()
    assert all(len(line.split()) == 11 for line in lines)
    cu_lines = [line for line in lines if line.startswith("1 0 ")]
    assert len(cu_lines) == 12 and "1 0 5 4 -8 6 5 -8 5 5 -8" in cu_lines  # Cu top face, normal +z
    materials, vertices = read_tri(path)
    expected_materials, expected_vertices = voxel_interface_triangles(single_cu_voxel())
    assert np.array_equal(materials, expected_materials) and np.allclose(
        vertices, expected_vertices
    )
    (tmp_path / "bad.tri").write_text("0 -123 1 2 3\n")
    with pytest.raises(ValueError, match="bad.tri, line 1"):
        read_tri(tmp_path / "bad.tri")


def test_export_rejects_scenes_it_cannot_express():
    with pytest.raises(ValueError, match="terminator"):
        voxel_interface_triangles(single_cu_voxel(), Scene(terminator_z_nm=30.0))
    with pytest.raises(ValueError, match="detector"):
        voxel_interface_triangles(single_cu_voxel(), Scene(detector_z_nm=1.0))


def test_pri_records_round_trip(tmp_path):
    [path] = export_pri(tmp_path / "beam.pri", 2.5, simulated_electrons_per_pixel=3)
    assert path.stat().st_size == 20 * 20 * 3 * 36
    records = read_electrons(path)
    assert np.array_equal(records, beam_raster(2.5, 3))
    assert (records["E"] == 2500).all() and (records["z"] == -2).all()
    assert (records["dz"] == -1).all() and (records["dx"] == 0).all() and (records["dy"] == 0).all()
    assert np.array_equal(records["x"], records["px"] + 0.5) and np.array_equal(
        records["y"], records["py"] + 0.5
    )
    assert (np.bincount(records["py"] * 20 + records["px"], minlength=400) == 3).all()
    paths = export_pri(tmp_path / "series", [0.5, 10.0], simulated_electrons_per_pixel=1)
    assert [p.name for p in paths] == ["beam_0.5keV.pri", "beam_10keV.pri"]
    assert read_electrons(paths[1])["E"][0] == 10000
    with pytest.raises(ValueError, match="positive"):
        export_pri(tmp_path / "x.pri", -1.0, 1)


def detector_records(rows):
    """Detector-output records from (px, py, energy_eV) tuples, moving up (+z in Nebula's frame)."""
    records = np.zeros(len(rows), dtype=ELECTRON_DTYPE)
    for record, (px, py, energy) in zip(records, rows):
        record["px"], record["py"], record["E"], record["dz"] = px, py, energy, 1.0
    return records


def test_import_detector_output_counts_per_pixel_above_cutoff(tmp_path):
    low = write_electrons(
        tmp_path / "det_1keV.bin", detector_records([(0, 0, 800), (0, 0, 49.9), (2, 1, 50.0)])
    )
    high = write_electrons(
        tmp_path / "det_3keV.bin", detector_records([(3, 1, 2000)] * 4 + [(0, 2, 10)])
    )
    stack = import_detector_output([high, low], [3.0, 1.0], simulated_electrons_per_pixel=4, shape=(3, 4))
    assert isinstance(stack, BseStack)
    assert stack.energies_keV.tolist() == [1.0, 3.0]
    expected = np.zeros((2, 3, 4), dtype=np.int64)
    expected[0, 0, 0] = 1  # the 49.9 eV electron is below the 50 eV cutoff
    expected[0, 1, 2] = 1  # counts[py, px]
    expected[1, 1, 3] = 4
    assert np.array_equal(stack.counts, expected)
    assert (
        np.allclose(stack.bse, expected / 4)
        and stack.cutoff_eV == 50.0
        and stack.simulated_electrons_per_pixel == 4
    )
    assert stack.meta["detector_files"] == [str(low), str(high)]
    reloaded = BseStack.load(stack.save(tmp_path / "stack.npz"))
    assert np.array_equal(reloaded.counts, expected)


def test_import_rejects_bad_detector_files(tmp_path):
    outside = write_electrons(tmp_path / "outside.bin", detector_records([(20, 0, 500)]))
    with pytest.raises(ValueError, match=r"outside.bin: pixel tag \(px=20, py=0\)"):
        import_detector_output(outside, 1.0, simulated_electrons_per_pixel=1)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(b"\0" * 40)
    with pytest.raises(ValueError, match="truncated.bin.*multiple of the 36-byte"):
        import_detector_output(truncated, 1.0, simulated_electrons_per_pixel=1)
    with pytest.raises(ValueError, match="2 detector files for 1 energies"):
        import_detector_output([outside, outside], [1.0], simulated_electrons_per_pixel=1)


def test_nebula_cli_export_then_import(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    nebula.register_cli(parser.add_subparsers(dest="command", required=True))
    geometry_file = tmp_path / "cube.npy"
    np.save(geometry_file, single_cu_voxel())
    args = parser.parse_args(
        [
            "nebula-export",
            str(geometry_file),
            "--out",
            str(tmp_path / "job"),
            "--energies",
            "1,2",
            "--electrons-per-pixel",
            "2",
        ]
    )
    assert args.func(args) == 0
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == [
        "beam_1keV.pri",
        "beam_2keV.pri",
        "cube.tri",
    ]
    assert "nebula_gpu cube.tri beam_1keV.pri" in capsys.readouterr().out
    # stand-in for Nebula's output: every primary comes back as a detected electron
    det = [tmp_path / "job" / f"beam_{e}keV.pri" for e in (1, 2)]
    args = parser.parse_args(
        [
            "nebula-import",
            *map(str, det),
            "--energies",
            "1,2",
            "--electrons-per-pixel",
            "2",
            "--out",
            str(tmp_path / "s.npz"),
        ]
    )
    assert args.func(args) == 0
    stack = BseStack.load(tmp_path / "s.npz")
    assert stack.bse.shape == (2, 20, 20) and np.allclose(stack.bse, 1.0)
