"""The dose study: binomial thinning gives the right mean and variance, the ``dose`` case expands
to the reachable doses, and the paired and class-mean statistics are what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark import metrics
from datasets.dose import DOSE_LEVELS, dose_levels, thin_counts, thin_yields


def test_thinning_has_the_binomial_mean_and_variance():
    rng = np.random.default_rng(0)
    counts = np.full(200_000, 40)
    thinned = thin_counts(counts, 0.25, rng)  # binomial: each primary kept with p
    assert thinned.mean() == pytest.approx(10.0, abs=0.03)  # k p
    assert thinned.var() == pytest.approx(40 * 0.25 * 0.75, rel=0.02)  # k p (1 - p)
    assert thin_counts(counts[:5], 1.0, rng).tolist() == [40] * 5
    with pytest.raises(ValueError, match="non-negative integers"):
        thin_counts(np.array([1.5]), 0.5, rng)


def test_thinned_yields_are_a_lower_dose_of_the_same_image():
    """Thinning 1000 e-/px yields to 50 e-/px: the mean is kept, the variance is that of 50 e-/px."""
    rng = np.random.default_rng(1)
    truth = 0.2
    high = rng.binomial(1000, truth, size=100_000) / 1000
    low = thin_yields(high, 1000, 50, rng)
    assert low.mean() == pytest.approx(truth, abs=2e-3)
    assert low.var() == pytest.approx(truth * (1 - truth) / 50, rel=0.03)
    assert np.allclose(low * 50, np.rint(low * 50), atol=1e-4)  # whole electrons at the new dose
    with pytest.raises(ValueError, match="can only thin"):
        thin_yields(high, 1000, 2000, rng)


def test_dose_levels_reachable_from_the_stored_dose():
    assert dose_levels(60) == [10, 25, 50, 60]
    assert dose_levels(1000) == [10, 25, 50, 100, 300, 1000]
    assert DOSE_LEVELS[-1] == 1000


def test_paired_difference_interval_separates_only_a_real_difference():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.9, 100)
    better = metrics.paired_difference_interval(base + 0.05 + rng.normal(0, 0.02, 100), base)
    assert better.low > 0 and better.mean == pytest.approx(0.05, abs=0.01)
    same = metrics.paired_difference_interval(base + rng.normal(0, 0.02, 100), base)
    assert same.low < 0 < same.high
    with pytest.raises(ValueError, match="same samples"):
        metrics.paired_difference_interval([1, 2], [1])


def test_class_mean_iou_averages_the_cu_and_si_classes():
    gt = np.zeros((4, 4, 4), bool)
    gt[:2] = True  # half Cu
    pred = np.zeros_like(gt)
    pred[:1] = True  # half of the Cu found, no false Cu
    assert metrics.iou(pred, gt) == pytest.approx(0.5)
    assert metrics.class_mean_iou(pred, gt) == pytest.approx(0.5 * (0.5 + 32 / 48))


# ------------------------------------------------------------------ datasets read below their dose
@pytest.fixture(scope="module")
def thinned_dataset(tmp_path_factory):
    """The smoke dataset simulated at 20 e-/pixel and read at 5."""
    from datasets.builder import build_dataset
    from datasets.presets import get_preset
    from datasets.storage import open_dataset

    out = tmp_path_factory.mktemp("dose") / "data"
    build_dataset(out, preset=get_preset("smoke", simulated_electrons_per_pixel=20, read_electrons_per_pixel=5), progress=False)
    return open_dataset(out)


def test_a_dose_below_the_simulated_one_is_an_exact_fixed_thinning(thinned_dataset):
    data = thinned_dataset
    assert (data.read_electrons_per_pixel, data.simulated_electrons_per_pixel, data.thinned) == (5, 20, True)
    at_dose, labels, ids = data.arrays("train")
    stored = data.arrays("train", stored=True)[0]
    assert np.array_equal(at_dose, data.arrays("train")[0])  # one fixed draw per sample
    assert np.allclose(at_dose * 5, np.rint(at_dose * 5), atol=1e-5)  # whole electrons at 5 e-/px
    assert not np.array_equal(at_dose, stored)
    assert at_dose.mean() == pytest.approx(stored.mean(), rel=0.05)  # same image, more noise
    counts = data.simulated_counts("train")
    assert np.array_equal(counts, np.rint(stored * 20))
    assert np.array_equal(data.sample(ids[0])["bse"], at_dose[0])
    assert np.array_equal(np.asarray(data.split("train")[0]["bse"]), at_dose[0])
    case, stored_case = data.case("nanocube"), data.case("nanocube", stored=True)
    assert np.allclose(case[0]["bse"] * 5, np.rint(case[0]["bse"] * 5), atol=1e-5)
    assert not np.array_equal(case[0]["bse"], stored_case[0]["bse"])


def test_the_dose_is_part_of_the_preset_only_where_set():
    from datasets.presets import get_preset

    # file format: the read dose is the settings key "dose", left out when unset (hashes unchanged)
    assert "dose" not in get_preset("quick").settings()
    assert "dose" not in get_preset("smoke", simulated_electrons_per_pixel=4, read_electrons_per_pixel=4).settings()  # = simulated
    assert get_preset("smoke", simulated_electrons_per_pixel=20, read_electrons_per_pixel=5).settings()["dose"] == 5
    with pytest.raises(ValueError, match="read_electrons_per_pixel must be an integer"):
        get_preset("smoke", simulated_electrons_per_pixel=4, read_electrons_per_pixel=8)


def test_training_draws_fresh_noise_every_epoch_and_resumes_exactly(thinned_dataset, tmp_path, monkeypatch):
    from dataclasses import replace

    import torch

    import methods.training as training
    from methods.base import create
    from methods.checkpoints import load_checkpoint

    settings = replace(training.TRAIN_PRESETS["smoke"], epochs=3, batch_size=8, eval_every=1)
    draws = []
    original = training.thin_to_dose

    def spy(counts, simulated, read, rng):
        out = original(counts, simulated, read, rng)
        draws.append(((simulated, read), out.copy()))
        return out

    monkeypatch.setattr(training, "thin_to_dose", spy)
    full = create("bsevox", config="tiny", preset="smoke")
    training.train(full, thinned_dataset, tmp_path / "full", settings, progress=False)
    assert len(draws) == 3 and {d[0] for d in draws} == {(20, 5)}  # one batch per epoch, 20 -> 5 e-/px
    assert not np.array_equal(draws[0][1], draws[1][1])  # a new draw each epoch

    part = create("bsevox", config="tiny", preset="smoke")
    data = thinned_dataset
    counts = (data.simulated_counts("train"), 20, 5)
    training.train_on_splits(part, data.arrays("train")[:2], data.arrays("val")[:2], tmp_path / "part",
                             settings, progress=False, until_epoch=2, train_counts=counts)
    training.train_on_splits(part, data.arrays("train")[:2], data.arrays("val")[:2], tmp_path / "part",
                             settings, progress=False, resume=True, train_counts=counts)
    a, b = load_checkpoint(tmp_path / "full" / "latest.pt"), load_checkpoint(tmp_path / "part" / "latest.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key

    draws.clear()
    once = create("bsevox", config="tiny", preset="smoke")
    training.train(once, thinned_dataset, tmp_path / "once", replace(settings, fresh_noise=False), progress=False)
    assert draws == []  # the fixed draw of every sample, as validation and test see them


def test_the_dose_study_has_its_own_data_at_a_top_dose(tmp_path):
    from benchmark.cases import dose_case
    from benchmark.runner import Benchmark
    from datasets.builder import build_dataset
    from datasets.presets import get_preset
    from datasets.storage import open_dataset

    preset = get_preset("smoke", dose_study_electrons_per_pixel=30, dose_study_test_samples=1)
    data = open_dataset(build_dataset(tmp_path / "data", preset=preset, progress=False))
    assert data.dose_study_electrons_per_pixel == 30 and data.cases() == ["nanocube", "nanowire"]
    groups = data.dose_study()
    assert list(groups) == ["test", "nanocube", "nanowire"]
    assert [s["id"] for s in groups["test"]] == data.split_ids("test")[:1]
    assert np.array_equal(groups["test"][0]["label"], data.sample(groups["test"][0]["id"])["label"])  # same geometry
    assert np.allclose(groups["nanocube"][0]["bse"] * 30, np.rint(groups["nanocube"][0]["bse"] * 30), atol=1e-4)
    case = dose_case(data, 25)
    assert len(case.ids) == 1 + 4 + 5 and case.fingerprint["simulated_electrons_per_pixel"] == 30
    assert (case.name, case.simulated_electrons_per_pixel, case.read_electrons_per_pixel) == ("dose", 30, 25)
    assert np.allclose(case.bse * 25, np.rint(case.bse * 25), atol=1e-4)
    bench = Benchmark("smoke", results_dir=tmp_path / "results", dataset=data, progress=False)
    assert bench.planner.dose_levels() == [2, 10, 25, 30]  # below the top, the data's own dose, the top
    with pytest.raises(ValueError, match="above simulated_electrons_per_pixel"):
        get_preset("smoke", dose_study_electrons_per_pixel=2)


def test_the_preset_settings_keep_the_file_format_of_the_dataset_hash():
    """``settings()`` feeds the manifest and the dataset hash: its keys are the file format's
    (``electrons_per_pixel`` = simulated, ``dose`` = read), whatever the preset's field names."""
    from datasets.presets import get_preset, settings_doses

    quick = get_preset("quick").settings()
    assert list(quick) == ["n_geometries", "electrons_per_pixel", "energies_keV", "cutoff_eV", "test_fraction",
                           "val_fraction", "shard_size", "seed", "cases", "physics", "elastic", "stopping",
                           "inelastic", "barrier", "case_repeats", "dose_study_electrons_per_pixel",
                           "dose_study_test_samples"]
    assert quick["electrons_per_pixel"] == 60 and settings_doses(quick) == (60, 60)
    thinned = get_preset("smoke", simulated_electrons_per_pixel=20, read_electrons_per_pixel=5).settings()
    assert (thinned["electrons_per_pixel"], thinned["dose"]) == (20, 5) and settings_doses(thinned) == (20, 5)


def test_the_dose_reader_thins_exactly_and_only_below_the_simulated_dose():
    from datasets.dose import DoseReader

    bse = np.random.default_rng(0).binomial(20, 0.3, size=(2, 4, 4)) / 20.0
    same = DoseReader(20, 20, seed=1)
    assert not same.thinned and same.read(bse, None, (0,)) is bse
    reader = DoseReader(20, 5, seed=1)
    low = reader.read(bse, None, (3,))
    assert reader.thinned and low.dtype == np.float32
    assert np.allclose(low * 5, np.rint(low * 5), atol=1e-5)  # whole electrons of 5
    assert np.array_equal(low, reader.read(bse, None, (3,))) and not np.array_equal(low, reader.read(bse, None, (4,)))
    assert np.array_equal(reader.simulated_counts(bse, None), np.rint(bse * 20))
    with pytest.raises(ValueError, match="not in"):
        DoseReader(5, 20, seed=0)
