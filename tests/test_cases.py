"""Named test cases (exact voxel counts), custom geometry files, export-case."""

import argparse

import numpy as np
import pytest
import tifffile
from fakes import FakeDataset

from datasets import cases
from datasets.cases import CaseSample, available_cases, export_case, get_case, load_custom_geometry
from datasets.scene import COPPER, PAPER_SHAPE_ZYX, SILICON, VACUUM, paper_block


def circle_cells(radius_nm: float, centre=(10.0, 10.0), size: int = 20) -> int:
    """Count, by brute force, the 1 nm cell centres of a size x size square inside a circle."""
    return sum(
        (a + 0.5 - centre[0]) ** 2 + (b + 0.5 - centre[1]) ** 2 <= radius_nm**2
        for a in range(size)
        for b in range(size)
    )


def test_available_cases_and_unknown_name():
    assert {"nanocube", "nanowire", "nanowire_vertical"} <= set(available_cases())
    with pytest.raises(KeyError, match="nanocube"):
        get_case("nanosphere")
    with pytest.raises(TypeError, match="nanocube"):
        get_case("nanocube", radius=3)
    with pytest.raises(ValueError, match="axis"):
        get_case("nanowire", axis="x")


def test_nanocube_positions_along_the_diagonal():
    samples = get_case("nanocube")
    assert [s.name for s in samples] == ["position1", "position2", "position3", "position4"]
    for k, sample in enumerate(samples, start=1):
        assert isinstance(sample, CaseSample)
        assert sample.geometry.shape == PAPER_SHAPE_ZYX and sample.geometry.dtype == np.uint8
        label = sample.label
        assert label.shape == (20, 20, 20) and label.dtype == np.uint8
        assert label.sum() == 125
        lo = (k - 1) * 5
        assert label[lo : lo + 5, lo : lo + 5, lo : lo + 5].all()  # block depth, y, x
        expected = np.zeros((20, 20, 20), dtype=bool)
        expected[lo : lo + 5, lo : lo + 5, lo : lo + 5] = True
        assert np.array_equal(sample.geometry, paper_block(expected))
        assert sample.params["depth_nm"] == lo


def test_nanowire_exact_voxel_counts():
    samples = get_case("nanowire")
    assert [s.name for s in samples] == [
        "radius2nm",
        "radius4nm",
        "radius6nm",
        "radius8nm",
        "radius10nm",
    ]
    counts = [int(s.label.sum()) for s in samples]
    # r = 2: the 12 half-integer points (+-0.5, +-0.5), (+-1.5, +-0.5), (+-0.5, +-1.5) per slice
    assert counts == [240, 1040, 2240, 4160, 6320]
    assert counts == [20 * circle_cells(r) for r in (2, 4, 6, 8, 10)]
    for sample in samples:
        label = sample.label
        assert (label == label[:, :1, :]).all(), "the horizontal wire is invariant along y"
        assert label[9, 0, 9] and label[10, 0, 10], "axis through x = 10 nm, z = 15 nm"
        assert sample.params["axis"] == "y"


def test_vertical_nanowire_variant():
    vertical = get_case("nanowire_vertical")
    assert [s.name for s in vertical] == [s.name for s in get_case("nanowire", axis="z")]
    for sample, radius in zip(vertical, (2, 4, 6, 8, 10)):
        label = sample.label
        assert label.sum() == 20 * circle_cells(radius)
        assert (label == label[:1]).all(), "the vertical wire is invariant along z"
        assert np.array_equal(
            sample.geometry, get_case("nanowire", axis="z")[radius // 2 - 1].geometry
        )


def good_geometry() -> np.ndarray:
    return get_case("nanocube")[1].geometry


def test_load_custom_geometry_npy_and_tif(tmp_path):
    npy = tmp_path / "mine.npy"
    np.save(npy, good_geometry().astype(np.int32))
    loaded = load_custom_geometry(npy)
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, good_geometry())
    tif = tmp_path / "stack.tif"
    tifffile.imwrite(tif, good_geometry())
    assert np.array_equal(load_custom_geometry(tif), good_geometry())
    [sample] = get_case(f"custom:{tif}")
    assert sample.name == "stack" and sample.label.sum() == 125


@pytest.mark.parametrize(
    "name, array, error, message",
    [
        ("flat.npy", np.zeros((20, 20), np.uint8), ValueError, "3-D"),
        ("small.npy", np.zeros((20, 20, 20), np.uint8), ValueError, r"paper scene \(26, 20, 20\)"),
        ("float.npy", paper_block().astype(np.float32), TypeError, "integer"),
        (
            "ids.npy",
            np.where(paper_block() == SILICON, 7, VACUUM).astype(np.uint8),
            ValueError,
            r"unknown material ids \[7\]",
        ),
        (
            "above.npy",
            np.where(np.arange(26)[:, None, None] == 2, COPPER, paper_block()).astype(np.uint8),
            ValueError,
            r"outside the Si block in z layers \[2\]",
        ),
    ],
)
def test_bad_custom_geometry_files_name_the_problem_and_the_file(
    tmp_path, name, array, error, message
):
    path = tmp_path / name
    np.save(path, array)
    with pytest.raises(error, match=message) as info:
        load_custom_geometry(path)
    assert name in str(info.value)


def test_missing_corrupt_and_unsupported_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.npy"):
        load_custom_geometry(tmp_path / "nothere.npy")
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="corrupt.npy.*cannot read"):
        load_custom_geometry(corrupt)
    text = tmp_path / "geometry.csv"
    text.write_text("0,1,2")
    with pytest.raises(ValueError, match="unsupported geometry file type '.csv'"):
        load_custom_geometry(text)
    np.save(tmp_path / "any.npy", np.zeros((4, 3, 3), np.uint8))
    assert load_custom_geometry(tmp_path / "any.npy", expected_shape=None).shape == (4, 3, 3)


def test_export_case_writes_one_npy_per_sample(tmp_path):
    paths = export_case("nanowire", tmp_path)
    assert [p.name for p in paths] == [f"nanowire_radius{r}nm.npy" for r in (2, 4, 6, 8, 10)]
    for path, sample in zip(paths, get_case("nanowire")):
        assert np.array_equal(np.load(path), sample.geometry)
    assert not list(tmp_path.glob("*.tmp*"))
    np.save(tmp_path / "part.npy", good_geometry())
    [custom] = export_case(f"custom:{tmp_path / 'part.npy'}", tmp_path / "out")
    assert custom.name == "part_part.npy"


def test_export_case_cli_with_nebula_files(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cases.register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export-case", "nanocube", "--out", str(tmp_path), "--nebula"])
    assert args.func(args) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [f"nanocube_position{k}.{ext}" for k in range(1, 5) for ext in ("npy", "tri")]
    )
    assert "nanocube_position1.npy" in capsys.readouterr().out


def test_nebula_case_holds_nebulas_stacks_thinned_to_the_dataset_dose():

    from benchmark.cases import nebula_case
    from benchmark.errors import UsageError
    from datasets.nebula_reference import load_reference
    from datasets.scene import DEFAULT_ENERGIES_KEV

    dataset = FakeDataset({}, energies_keV=DEFAULT_ENERGIES_KEV, simulated_electrons_per_pixel=60)
    case = nebula_case(dataset, seed=1)
    assert case.ids[:4] == ["position1", "position2", "position3", "position4"] and len(case.ids) == 9
    assert case.bse.shape == (9, 20, 20, 20) and case.labels.shape == (9, 20, 20, 20)
    full = load_reference("nanowire_r10").bse
    thinned = case.bse[case.ids.index("radius10nm")]
    assert np.allclose(thinned * 60, np.round(thinned * 60))  # counts of 60 primaries
    assert thinned.mean() == pytest.approx(full.mean(), rel=0.02)  # the same mean yield
    assert thinned.std() > full.std()  # more shot noise
    np.testing.assert_array_equal(nebula_case(dataset, seed=1).bse, case.bse)  # seeded
    with pytest.raises(UsageError, match="needs a dataset at Nebula's energies"):
        nebula_case(FakeDataset({}, energies_keV=[1.0, 2.0], simulated_electrons_per_pixel=60))
