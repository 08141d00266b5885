"""The realism case: its levels, its data per level, its runs and rows, and the robust (augmented)
training of the learned methods."""

from __future__ import annotations

import dataclasses
import json

import fakes
import numpy as np
import pandas as pd
import pytest

from benchmark.errors import UsageError
from benchmark.presets import get_preset
from benchmark.realism import REALISM_CASE, REALISM_TEST_SAMPLES, level_seed, realism_case
from benchmark.runner import Benchmark
from datasets.acquisition import LEVELS
from datasets.acquisition import level as image_level
from datasets.detectors import AnnularDetector, PlaneDetector, WindowDetector, detector_from_record
from datasets.errors import UnknownNameError
from datasets.realism import (
    AUGMENT_PROBABILITY,
    IDEAL,
    RESIMULATED,
    augment_image_degradations,
    augmentation_record,
    baseline,
    realism_level,
    realism_levels,
)
from methods import base
from methods.base import create

SIZE, DEPTH = 4, 20


def realism_dataset(n_test: int = 3) -> fakes.FakeDataset:
    """Test samples t0.. and a two-sample nanocube case (one repeat ``@r1`` that the case leaves out)."""
    rng = np.random.default_rng(0)

    def sample(sid):
        label = np.zeros((DEPTH, SIZE, SIZE), np.uint8)
        label[:, rng.integers(SIZE), rng.integers(SIZE)] = 1
        return sid, rng.uniform(0.1, 0.4, (2, SIZE, SIZE)).astype(np.float32), label

    def split(items):
        return np.stack([b for _, b, _ in items]), np.stack([lab for _, _, lab in items]), [s for s, _, _ in items]

    cases = {"nanocube": [dict(zip(("id", "bse", "label"), sample(s))) for s in ("position1", "position1@r1")]}
    data = fakes.FakeDataset({"test": split([sample(f"t{i}") for i in range(n_test)]), "val": split([sample("v0")])},
                             cases=cases, energies_keV=(1.0, 3.0), simulated_electrons_per_pixel=20,
                             meta={"settings": {"energies_keV": [1.0, 3.0], "electrons_per_pixel": 20,
                                                "cutoff_eV": 50.0}})
    data.path = None
    return data


# ------------------------------------------------------------------------------------------ the levels
def test_the_levels_start_ideal_and_name_every_image_level_once():
    levels = realism_levels()
    names = [level.name for level in levels]
    assert names[0] == IDEAL and len(set(names)) == len(names)
    assert {lv.name for lv in levels if lv.kind == "image"} == set(LEVELS)
    probes = [lv.value for lv in levels if lv.degradation == "probe"]
    assert probes == sorted(probes) == [0.5, 1.0, 2.0, 3.0]
    for lv in levels:  # values increase along each degradation's axis
        same = [other.value for other in levels if other.degradation == lv.degradation]
        assert same == sorted(same)
    assert names[1] == RESIMULATED and realism_level(RESIMULATED).kind == "simulation"
    assert baseline("probe") == baseline("detector") == RESIMULATED and baseline("drift") == IDEAL
    with pytest.raises(UnknownNameError, match="unknown realism level 'drift-7nm'; known: ideal, resimulated, probe"):
        realism_level("drift-7nm")


def test_detector_records_round_trip_and_bad_records_are_named():
    for detector in (PlaneDetector(), AnnularDetector(15.0, 75.0, 0.0), WindowDetector(300.0)):
        assert detector_from_record(detector.describe()) == detector
    assert detector_from_record(None) == PlaneDetector()
    assert detector_from_record(realism_level("detector-annular").simulate["detector"]) == AnnularDetector(15, 75, 0)
    with pytest.raises(UnknownNameError, match="unknown detector 'ring'"):
        detector_from_record({"kind": "ring"})
    with pytest.raises(ValueError, match="bad parameters for the window detector"):
        detector_from_record({"kind": "window", "width": 3})
    with pytest.raises(ValueError, match="take-off angles"):
        detector_from_record({"kind": "annular", "takeoff_min_deg": 80, "takeoff_max_deg": 10})


# ------------------------------------------------------------------------------------------ the data
def test_each_image_level_degrades_the_ideal_stacks_the_same_way_for_every_method(tmp_path):
    data = realism_dataset()
    ideal = realism_case(data, IDEAL, tmp_path, seed=3)
    assert ideal.ids == ["t0", "t1", "t2", "position1"]  # the named case's repeat left out
    test_bse = data.arrays("test")[0]
    np.testing.assert_array_equal(ideal.bse[:3], test_bse)
    drift = realism_case(data, "drift-0.5nm", tmp_path, seed=3)
    np.testing.assert_array_equal(drift.bse, image_level("drift-0.5nm")(ideal.bse, seed=level_seed(3, "drift-0.5nm")))
    assert not np.array_equal(drift.bse, ideal.bse)
    np.testing.assert_array_equal(drift.labels, ideal.labels)
    np.testing.assert_array_equal(realism_case(data, "drift-0.5nm", tmp_path, seed=3).bse, drift.bse)
    assert not np.array_equal(realism_case(data, "drift-0.5nm", tmp_path, seed=4).bse, drift.bse)
    assert drift.fingerprint["acquisition"] == "drift-0.5nm"
    # every simulated level draws from one seed (common random numbers), each image level from its own
    assert level_seed(3, "probe-1nm") == level_seed(3, "detector-annular") == level_seed(3, RESIMULATED)
    assert len({level_seed(3, "probe-1nm"), level_seed(3, "drift-0.5nm"), level_seed(3, "gain-5pct")}) == 3


def test_the_case_takes_the_first_test_geometries_only():
    from benchmark.realism import realism_samples

    ids = realism_samples(realism_dataset(n_test=REALISM_TEST_SAMPLES + 4))[0]
    assert ids == [f"t{i}" for i in range(REALISM_TEST_SAMPLES)] + ["position1"]


# ------------------------------------------------------------------------------------------ runs and rows
class LevelEcho(base.Method):
    """Predicts Cu where the first energy's image is above its mean (depends on the input)."""

    name = "levelecho"

    def _reconstruct(self, stacks, energies_keV):
        hot = (stacks[:, 0] > stacks[:, 0].mean(axis=(1, 2), keepdims=True)).astype(np.float32)
        return np.repeat(hot[:, None], self.depth, axis=1)


@pytest.fixture
def echo(monkeypatch):
    monkeypatch.setitem(base.REGISTRY, "levelecho", f"{__name__}:LevelEcho")


def test_the_case_runs_once_per_level_and_rows_name_their_level(tmp_path, echo):
    bench = Benchmark("smoke", results_dir=tmp_path / "out", dataset=realism_dataset(), progress=False,
                      log=lambda m: None)
    specs = bench.plan("levelecho", REALISM_CASE, threshold_rule="fixed-0.5")
    assert [s.acquisition for s in specs] == [level.name for level in realism_levels()]
    keys = {bench.executor.run_key(s) for s in specs}
    assert len(keys) == len(specs)  # a level's definition is part of its run's key
    picked = bench.plan("levelecho", [REALISM_CASE, "test"], threshold_rule="fixed-0.5",
                        acquisitions=["gain-10pct", IDEAL, "gain-10pct"])
    assert [(s.case, s.acquisition) for s in picked] == [(REALISM_CASE, "gain-10pct"), (REALISM_CASE, IDEAL),
                                                          ("test", None)]
    rows = bench.run_all(picked)
    assert rows.groupby("case")["acquisition"].unique().map(list).to_dict() == {
        REALISM_CASE: ["gain-10pct", IDEAL], "test": [IDEAL]}
    assert rows.loc[rows["case"] == REALISM_CASE, "run_key"].nunique() == 2
    results = pd.read_parquet(bench.store.results_path)
    assert len(results) == len(rows) == 4 + 4 + 3  # nothing counted twice: the level is part of a result's identity
    with pytest.raises(UsageError, match="--level picks levels of the 'realism' case; add --case realism"):
        bench.plan("levelecho", "test", acquisitions=["gain-10pct"])
    with pytest.raises(UnknownNameError, match="unknown realism level 'fog'"):
        bench.plan("levelecho", REALISM_CASE, acquisitions=["fog"])


def test_a_preset_with_robust_training_plans_each_learned_model_beside_its_robust_twin(tmp_path):
    preset = dataclasses.replace(get_preset("smoke"), robust_training=True)
    bench = Benchmark(preset, results_dir=tmp_path / "out", dataset=realism_dataset(), progress=False,
                      log=lambda m: None)
    specs = bench.plan(["medsem", "unet3d"], REALISM_CASE, acquisitions=[IDEAL])
    assert sorted(s.model.tag() for s in specs) == ["medsem", "unet3d-tiny", "unet3d-tiny-robust"]
    robust = next(s.model for s in specs if s.model.variant == "robust")
    assert robust.params()["augment_acquisition"] == "realism"
    assert bench.models.directory(robust).name == "unet3d-tiny-robust"
    plain = bench.plan(["unet3d"], "test")  # other cases: the ideal-trained model only
    assert [s.model.variant for s in plain] == ["full"]
    assert not get_preset("smoke").robust_training and get_preset("quick").robust_training


def test_a_preset_limits_the_main_jobs_realism_levels_and_smoke_keeps_one_per_degradation(tmp_path):
    smoke = get_preset("smoke")
    degradations = {lv.degradation for lv in realism_levels()}
    assert {realism_level(name).degradation for name in smoke.realism_levels} == degradations
    assert get_preset("quick").realism_levels == ()  # the benchmark itself runs all 20
    bench = Benchmark(smoke, results_dir=tmp_path / "out", dataset=realism_dataset(), progress=False,
                      log=lambda m: None)
    planned = {s.acquisition for s in bench.main_plan() if s.case == REALISM_CASE}
    assert planned == set(smoke.realism_levels)
    assert smoke.describe()["realism_levels"] == list(smoke.realism_levels)
    assert "realism_levels" not in get_preset("quick").describe()  # quick keeps its run keys


# ------------------------------------------------------------------------------------------ augmentation
def test_augmentation_is_seeded_per_sample_and_applies_each_degradation_half_the_time():
    rng = np.random.default_rng(1)
    batch = rng.uniform(0.1, 0.4, (400, 3, 8, 8))
    out = augment_image_degradations(batch, seed=5)
    assert out.shape == batch.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, augment_image_degradations(batch, seed=5))
    assert not np.array_equal(out, augment_image_degradations(batch, seed=6))
    untouched = np.mean([np.array_equal(o, b.astype(np.float32)) for o, b in zip(out, batch)])
    expected = (1 - AUGMENT_PROBABILITY) ** 5  # none of the five degradations drawn: 1/32
    assert abs(untouched - expected) < 4 * np.sqrt(expected * (1 - expected) / len(batch))
    assert out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(ValueError, match=r"a batch \(N, E, H, W\)"):
        augment_image_degradations(batch[0], seed=5)


def test_the_probe_blur_has_the_probe_width_and_keeps_the_mean():
    from datasets.detectors import FWHM_PER_SIGMA
    from datasets.realism import probe_blur

    point = np.zeros((1, 41, 41))
    point[0, 20, 20] = 1.0
    blurred = probe_blur(point, fwhm_nm=3.0)[0]
    y, x = np.mgrid[:41, :41] - 20
    assert blurred.sum() == pytest.approx(1.0)
    assert np.sqrt((blurred * x**2).sum()) == pytest.approx(3.0 / FWHM_PER_SIGMA, rel=0.02)
    np.testing.assert_array_equal(probe_blur(point, 0.0), point)
    flat = np.full((2, 6, 6), 0.3)
    np.testing.assert_allclose(probe_blur(flat, 2.0), flat)  # mirrored borders: a flat image stays flat


def test_a_robust_model_trains_with_augmentation_and_records_it(tmp_path):
    data = fakes.ToyDataset(n_train=8, n_val=4, n_test=4)
    robust = create("unet3d", config="tiny", preset="smoke", augment_acquisition="realism")
    assert robust.train_settings().acquisition_augment == "realism"
    robust.fit(data, out_dir=tmp_path / "robust", progress=False)
    info = json.loads((tmp_path / "robust" / "method.json").read_text())
    assert info["training_data"]["augmentation"] == augmentation_record("realism")
    summary = json.loads((tmp_path / "robust" / "summary.json").read_text())
    assert summary["settings"]["acquisition_augment"] == "realism"
    plain = create("unet3d", config="tiny", preset="smoke")
    assert plain.train_settings().acquisition_augment is None
    assert not plain.saved_model_matches(tmp_path / "robust")[0]  # not reused for the ideal-trained model
    with pytest.raises(UnknownNameError, match="unknown acquisition augmentation 'fog'"):
        create("unet3d", config="tiny", augment_acquisition="fog")
