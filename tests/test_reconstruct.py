"""``python -m benchmark reconstruct`` writes a volume with its metadata (npz, NIfTI, npy), scores
it against labels carried by the stack, warns on a dose far from the model's; ``show`` draws it."""

import json
import struct

import numpy as np
import pytest
from test_runner import FakeDataset, FakeMethod, column_sample

from benchmark import cli, reconstruct, show
from benchmark.runner import Benchmark, ModelSpec
from datasets.stack import BseStack
from methods import base


class LabelledFakeDataset(FakeDataset):
    """The fake dataset with a training split, so a learned method can be trained on it."""

    def __init__(self):
        super().__init__(extra_splits={"train": [("a0", column_sample([(0, 0)])), ("a1", column_sample([(2, 1)]))]})


@pytest.fixture
def fake_setup(monkeypatch, tmp_path):
    monkeypatch.setitem(base.REGISTRY, "fake", f"{FakeMethod.__module__}:FakeMethod")
    monkeypatch.setitem(base.REGISTRY, "fakelearned", "fake_learned_method:FakeLearned")

    def fake_benchmark(args):
        return Benchmark(args.preset, results_dir=args.results, device=args.device, seed=args.seed,
                         threads=args.threads, dataset=LabelledFakeDataset(), progress=False, log=lambda m: None)

    monkeypatch.setattr(cli, "_benchmark", fake_benchmark)


def _metadata(depth=20):
    return reconstruct.volume_metadata(
        (depth, 4, 5), method="fake", model_dir=None, model_fingerprint="-", threshold=0.4,
        threshold_reason="fixed", stack_path="s.npz", energies_keV=[1.0, 3.0], stack_electrons_per_pixel=60,
        training_electrons_per_pixel=None, training_dose_source="none")


def _run(tmp_path, stack_path, out, *extra, method="fake"):
    config = ["--config", "one"] if method == "fakelearned" else []
    return cli.main(["reconstruct", "--method", method, *config, "--stack", str(stack_path), "--out", str(out),
                     "--preset", "smoke", "--results", str(tmp_path / "res"), *extra])


@pytest.mark.parametrize("name", ["vol.npz", "vol.nii.gz", "vol.nii", "vol.npy"])
def test_volume_round_trip_keeps_arrays_and_metadata(tmp_path, name):
    rng = np.random.default_rng(0)
    prob = rng.random((20, 4, 5)).astype(np.float32)
    binary = (prob >= 0.4).astype(np.uint8)
    meta = _metadata()
    written = reconstruct.save_volume(tmp_path / name, prob, binary, meta)
    assert all(p.is_file() for p in written)
    prob2, binary2, meta2 = reconstruct.load_volume(tmp_path / name)
    np.testing.assert_array_equal(prob2, prob)
    np.testing.assert_array_equal(binary2, binary)
    assert meta2 == json.loads(json.dumps(meta))
    assert meta2["voxel_size_nm"] == [1.0, 1.0, 1.0] and meta2["origin_nm"] == [5.5, 0.5, 0.5]
    assert meta2["si_surface_z_nm"] == 5.0
    assert not list(tmp_path.glob(".*tmp*"))


def test_nifti_affine_holds_the_voxel_size_and_origin_in_micrometres(tmp_path):
    import nibabel

    meta = _metadata(depth=10)  # 10 layers over the 20 nm block: 2 nm along z
    reconstruct.save_volume(tmp_path / "vol.nii.gz", np.zeros((10, 4, 5), np.float32),
                            np.zeros((10, 4, 5), np.uint8), meta)
    image = nibabel.load(str(tmp_path / "vol.nii.gz"))
    assert image.shape == (5, 4, 10)  # [x, y, z]
    assert image.header.get_xyzt_units()[0] == "micron"
    np.testing.assert_allclose(image.header.get_zooms(), (0.001, 0.001, 0.002))
    np.testing.assert_allclose(image.affine[:3, 3], (0.0005, 0.0005, 0.006))  # voxel [0, 0, 0] centre
    assert json.loads((tmp_path / "vol.json").read_text())["voxel_size_nm"] == [2.0, 1.0, 1.0]
    assert (tmp_path / "vol_binary.nii.gz").is_file()


def test_reconstruct_writes_npz_with_metadata_and_prints_iou_of_labelled_stack(tmp_path, capsys, fake_setup):
    bse, label = column_sample([(1, 1)], extra=[(2, 2)])  # one true column, one false bright one
    stack = BseStack(bse=bse, energies_keV=[1.0, 3.0], labels=label).save(tmp_path / "stack.npz")
    assert _run(tmp_path, stack, tmp_path / "vol", "--threshold-rule", "fixed-0.5") == 0
    out = capsys.readouterr().out
    # 20 true Cu voxels found, 20 false: Cu IoU 20 / 40; Si IoU 280 / 300 of the 320 voxels
    assert "IoU against the stack's labels: Cu 0.500, Si 0.933" in out and "recall 1.000" in out
    prob, binary, meta = reconstruct.load_volume(tmp_path / "vol.npz")  # no suffix: .npz
    assert prob.shape == binary.shape == (20, 4, 4)
    assert meta["method"] == "fake" and meta["threshold"] == 0.5 and meta["model_fingerprint"] == "-"
    assert meta["scores_against_stack_labels"]["iou_cu"] == 0.5
    assert meta["energies_keV"] == [1.0, 3.0] and meta["stack"] == str(stack)


def test_reconstruct_refuses_labels_of_another_depth(tmp_path, capsys, fake_setup):
    bse, label = column_sample([(1, 1)])
    stack = BseStack(bse=bse, energies_keV=[1.0, 3.0], labels=label[:10]).save(tmp_path / "stack.npz")
    assert _run(tmp_path, stack, tmp_path / "vol.npz") == 1
    assert "labels have shape (10, 4, 4) [z, y, x], the reconstruction (20, 4, 4)" in capsys.readouterr().err
    assert not (tmp_path / "vol.npz").exists()


def test_stack_labels_are_checked_and_round_trip(tmp_path):
    bse, label = column_sample([(1, 1)])
    loaded = BseStack.load(BseStack(bse=bse, energies_keV=[1.0, 3.0], labels=label).save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(loaded.labels, label)
    with pytest.raises(ValueError, match=r"labels must have shape \(D, 4, 4\)"):
        BseStack(bse=bse, energies_keV=[1.0, 3.0], labels=label[:, :3])
    with pytest.raises(ValueError, match="labels must be a Cu mask of 0 and 1"):
        BseStack(bse=bse, energies_keV=[1.0, 3.0], labels=label * 2)


def test_dose_far_from_the_models_is_warned_in_one_line(tmp_path, capsys, fake_setup):
    bench = cli._benchmark(cli.build_parser().parse_args(
        ["run", "--method", "fakelearned", "--case", "test", "--preset", "smoke", "--results", str(tmp_path / "res")]))
    bench.models.ensure_trained(ModelSpec("fakelearned", "one"))
    bse, _ = column_sample([(1, 1)])
    stack = BseStack(bse=bse, energies_keV=[1.0, 3.0], simulated_electrons_per_pixel=3000).save(tmp_path / "stack.npz")
    assert _run(tmp_path, stack, tmp_path / "vol.npz", method="fakelearned") == 0
    err = capsys.readouterr().err
    # the smoke data are read at 2 e-/pixel
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: the stack's dose (3000 e-/pixel) is 1500x above the dose fakelearned-one was "
                        "trained on (2 e-/pixel); its accuracy at this dose is untested (see the dose case: "
                        "`python -m benchmark run --case dose`)"]
    meta = reconstruct.load_volume(tmp_path / "vol.npz")[2]
    assert meta["stack_electrons_per_pixel"] == 3000 and meta["model_training_electrons_per_pixel"] == 2
    assert meta["model_dir"].endswith("fakelearned-one") and len(meta["model_fingerprint"]) == 16
    stack = BseStack(bse=bse, energies_keV=[1.0, 3.0], simulated_electrons_per_pixel=5).save(tmp_path / "near.npz")
    assert _run(tmp_path, stack, tmp_path / "vol.npz", method="fakelearned") == 0
    assert "warning" not in capsys.readouterr().err  # 2.5x: no warning

    # a model that recorded its training dose (methods.training.train writes it) is taken at its word
    info_path = bench.models.directory(ModelSpec("fakelearned", "one")) / "method.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "training_data": {"electrons_per_pixel": 1000}}))
    assert _run(tmp_path, tmp_path / "stack.npz", tmp_path / "vol.npz", method="fakelearned") == 0
    assert "warning" not in capsys.readouterr().err  # 3000 vs 1000: 3x, no warning
    meta = reconstruct.load_volume(tmp_path / "vol.npz")[2]
    assert meta["model_training_electrons_per_pixel"] == 1000
    assert meta["model_training_dose_source"].startswith("the model's method.json")


def test_dose_warning_threshold_is_a_factor_of_three_either_way():
    assert reconstruct.dose_warning(180, 60, "m") is None and reconstruct.dose_warning(20, 60, "m") is None
    assert "3x above" in reconstruct.dose_warning(181, 60, "m")
    assert "3x below" in reconstruct.dose_warning(19, 60, "m")
    assert reconstruct.dose_warning(None, 60, "m") is None and reconstruct.dose_warning(3000, None, "m") is None


@pytest.mark.parametrize("out, message", [
    ("vol.tif", "give a name ending in .npz (default format), .nii.gz / .nii (NIfTI) or .npy"),
    ("adir", "is a directory"),
])
def test_reconstruct_bad_output_names_fail_before_the_work(tmp_path, capsys, fake_setup, out, message):
    (tmp_path / "adir.npz").mkdir()
    bse, _ = column_sample([(1, 1)])
    stack = BseStack(bse=bse, energies_keV=[1.0, 3.0]).save(tmp_path / "stack.npz")
    calls = FakeMethod.calls
    assert _run(tmp_path, stack, tmp_path / out) == 2
    assert message in capsys.readouterr().err
    assert FakeMethod.calls == calls


def _png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.parametrize("name", ["vol.npz", "vol.nii.gz"])
def test_show_writes_a_png_of_the_figure_size(tmp_path, capsys, name):
    prob = np.zeros((20, 4, 5), np.float32)
    prob[3:9, 1:3, 2] = 0.9
    reconstruct.save_volume(tmp_path / name, prob, (prob > 0.5).astype(np.uint8), _metadata())
    assert cli.main(["show", str(tmp_path / name), "-o", str(tmp_path / "fig.png")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "fig.png")
    width, height = show.FIGURE_SIZE_IN
    assert _png_size(tmp_path / "fig.png") == (round(width * 100), round(height * 100))
    assert cli.main(["show", str(tmp_path / name), "--binary", "--dpi", "50"]) == 0
    assert _png_size(tmp_path / "vol.png") == (round(width * 50), round(height * 50))  # default name


def test_show_names_bad_inputs(tmp_path, capsys):
    assert cli.main(["show", str(tmp_path / "none.npz")]) == 1
    assert "no reconstruction file at" in capsys.readouterr().err
    stack = BseStack(bse=np.full((2, 4, 4), 0.1), energies_keV=[1.0, 3.0]).save(tmp_path / "stack.npz")
    assert cli.main(["show", str(stack)]) == 1
    assert "is not a reconstruction .npz (arrays 'probability' and 'meta_json' expected" in capsys.readouterr().err
    reconstruct.save_volume(tmp_path / "vol.npy", np.zeros((20, 4, 5)), np.zeros((20, 4, 5)), _metadata())
    (tmp_path / "vol.json").unlink()
    assert cli.main(["show", str(tmp_path / "vol.npy")]) == 1
    assert "the metadata sidecar" in capsys.readouterr().err
    reconstruct.save_volume(tmp_path / "vol.npz", np.zeros((20, 4, 5)), np.zeros((20, 4, 5)), _metadata())
    assert cli.main(["show", str(tmp_path / "vol.npz"), "-o", str(tmp_path / "fig.jpg")]) == 2
    assert "the figure is a PNG" in capsys.readouterr().err


def test_slice_depths_spread_over_the_volume():
    assert show.slice_depths(20) == [2, 7, 12, 17]
    assert show.slice_depths(2) == [0, 1]


def test_undefined_scores_are_null_in_the_metadata_and_n_a_in_the_line(tmp_path):
    labels = np.zeros((20, 4, 4), np.uint8)
    labels[:, 1, 1] = 1
    scores = reconstruct.label_scores(np.zeros_like(labels), labels)  # nothing found: precision 0 / 0, Si 300 / 320
    meta = reconstruct.volume_metadata((20, 4, 4), method="m", model_dir=None, model_fingerprint="-",
                                       threshold=0.5, threshold_reason="", stack_path="s", energies_keV=[1.0],
                                       stack_electrons_per_pixel=None, training_electrons_per_pixel=None,
                                       training_dose_source="", scores=scores)
    assert meta["scores_against_stack_labels"]["precision_cu"] is None
    reconstruct.save_volume(tmp_path / "v.npy", np.zeros((20, 4, 4)), np.zeros((20, 4, 4)), meta)
    assert "NaN" not in (tmp_path / "v.json").read_text()
    assert "Cu 0.000, Si 0.938, class mean 0.469 (Cu precision n/a, recall 0.000" in reconstruct.format_scores(scores)


def _acquisition_warnings(err):
    return [line for line in err.splitlines() if line.startswith("warning: the stack's acquisition")]


def test_acquisition_other_than_the_training_conditions_is_warned_in_one_line(tmp_path, capsys, fake_setup):
    from datasets.acquisition import IDEAL_CONDITIONS, Acquisition, Drift
    from datasets.degrade import degrade_stack

    bench = cli._benchmark(cli.build_parser().parse_args(
        ["run", "--method", "fakelearned", "--case", "test", "--preset", "smoke", "--results", str(tmp_path / "res")]))
    bench.models.ensure_trained(ModelSpec("fakelearned", "one"))
    bse, _ = column_sample([(1, 1)])
    ideal = BseStack(bse=bse, energies_keV=[1.0, 3.0], simulated_electrons_per_pixel=2,
                     meta={"scene": {"voxel_nm": 1.0}})
    ideal.save(tmp_path / "ideal.npz")
    assert _run(tmp_path, tmp_path / "ideal.npz", tmp_path / "vol.npz", method="fakelearned") == 0
    assert _acquisition_warnings(capsys.readouterr().err) == []  # simulated, nothing recorded: ideal
    meta = reconstruct.load_volume(tmp_path / "vol.npz")[2]
    assert meta["stack_acquisition"] == meta["model_training_acquisition"] == IDEAL_CONDITIONS
    assert meta["model_training_acquisition_source"].startswith("ideal data (point beam")

    degrade_stack(ideal, Acquisition([Drift(0.5)]), seed=1).save(tmp_path / "drift.npz")
    assert _run(tmp_path, tmp_path / "drift.npz", tmp_path / "vol.npz", "--probe-fwhm-nm", "2", "--detector",
                "annular", "--pixel-nm", "1", method="fakelearned") == 0
    assert _acquisition_warnings(capsys.readouterr().err) == [
        "warning: the stack's acquisition differs from the conditions fakelearned-one was trained on: probe FWHM "
        "2 nm (trained: 0 nm); detector 'annular' (trained: 'plane'); drift 0.5 nm (trained: 0 nm); its accuracy "
        "under these conditions is untested"]
    meta = reconstruct.load_volume(tmp_path / "vol.npz")[2]
    assert meta["stack_acquisition"] == {**IDEAL_CONDITIONS, "probe_fwhm_nm": 2.0, "detector": "annular",
                                         "drift_nm": 0.5}
    assert meta["model_training_acquisition"] == IDEAL_CONDITIONS

    # a model that recorded its training conditions is taken at its word
    info_path = bench.models.directory(ModelSpec("fakelearned", "one")) / "method.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "training_data": {"acquisition": {"probe_fwhm_nm": 2.0, "drift_nm": 0.5}}}))
    assert _run(tmp_path, tmp_path / "drift.npz", tmp_path / "vol.npz", "--probe-fwhm-nm", "2",
                method="fakelearned") == 0
    assert _acquisition_warnings(capsys.readouterr().err) == []
    meta = reconstruct.load_volume(tmp_path / "vol.npz")[2]
    assert meta["model_training_acquisition"]["probe_fwhm_nm"] == 2.0
    assert meta["model_training_acquisition_source"].startswith("the model's method.json")


def test_a_users_stack_without_metadata_is_warned_only_on_conditions_given(tmp_path, capsys, fake_setup):
    bse, _ = column_sample([(1, 1)])
    stack = BseStack(bse=bse, energies_keV=[1.0, 3.0]).save(tmp_path / "stack.npz")
    assert _run(tmp_path, stack, tmp_path / "vol.npz") == 0
    assert _acquisition_warnings(capsys.readouterr().err) == []
    assert set(reconstruct.load_volume(tmp_path / "vol.npz")[2]["stack_acquisition"].values()) == {None}
    assert _run(tmp_path, stack, tmp_path / "vol.npz", "--pixel-nm", "2", "--probe-fwhm-nm", "0") == 0
    assert _acquisition_warnings(capsys.readouterr().err) == [
        "warning: the stack's acquisition differs from the conditions fake was built for: pixel 2 nm (trained: 1 nm); "
        "its accuracy under these conditions is untested"]
    meta = reconstruct.load_volume(tmp_path / "vol.npz")[2]
    assert meta["stack_acquisition"]["pixel_nm"] == 2.0 and meta["stack_acquisition"]["drift_nm"] is None


@pytest.mark.parametrize("flags, message", [(["--pixel-nm", "0"], "--pixel-nm must be positive"),
                                            (["--probe-fwhm-nm", "-1"], "--probe-fwhm-nm must be >= 0")])
def test_bad_acquisition_flags_fail_before_the_work(tmp_path, capsys, fake_setup, flags, message):
    bse, _ = column_sample([(1, 1)])
    stack = BseStack(bse=bse, energies_keV=[1.0, 3.0]).save(tmp_path / "stack.npz")
    assert _run(tmp_path, stack, tmp_path / "vol.npz", *flags) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "vol.npz").exists()
