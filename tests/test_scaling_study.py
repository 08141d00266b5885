"""The scaling study (benchmark/scaling_study.py, scaling_jobs.py, scaling_fit.py): size configs
at matched parameter counts, nested seeded subsets, the step rule, the power-law fit and its
intervals, a smoke study end to end with an interruption and a resume, Dask equal to local.

The pool is built once per module with the builder's test seam: this module is a fast fake
simulator (as in tests/test_builder.py), so no Monte Carlo runs here.
"""

from __future__ import annotations

import dataclasses
import json
import time

import fakes
import numpy as np
import pandas as pd
import pytest
import torch

from benchmark import scaling_fit, scaling_jobs, scaling_study
from methods.train_settings import TRAIN_PRESETS

#: the smoke study with fewer bootstrap resamples and at most 4 optimiser steps of 8 samples per
#: job (1 or 2 epochs), so that the study runs three times in well under a minute
SMOKE = dataclasses.replace(scaling_study.STUDY_PRESETS["smoke"], n_resamples=50, batch_size=8,
                            step_rule=scaling_study.StepRule(2, 8, 0.5, 2, 4))


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from datasets.builder import build_dataset

    preset = scaling_study.STUDY_DATASETS[SMOKE.dataset]
    return build_dataset(tmp_path_factory.mktemp("pool"), preset=preset, progress=False, simulator=fakes)


@pytest.fixture(scope="module")
def uninterrupted(pool, tmp_path_factory):
    """The smoke study run once without interruption: (results folder, result)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    return root, scaling_study.run_study(SMOKE, root, data=pool, progress=False)


def result_rows(root) -> pd.DataFrame:
    return pd.read_parquet(root / "scaling.parquet")[scaling_jobs.RESULT_COLUMNS]


# ---------------------------------------------------------------------------- sizes and the plan
def _parameters(network: str, config: str) -> int:
    from methods import registry

    return registry.create(network, config=config).describe()["parameters"]


@pytest.mark.parametrize("size,low,high", [("0.3M", 0.25e6, 0.35e6), ("1.2M", 1.0e6, 1.4e6), ("5M", 4.3e6, 5.7e6)])
def test_sizes_have_matched_parameter_counts(size, low, high):
    counts = {net: _parameters(net, config) for net, config in scaling_study.SIZES[size].items()}
    assert set(counts) == set(scaling_study.NETWORKS)
    assert all(low <= n <= high for n in counts.values()), counts
    assert max(counts.values()) / min(counts.values()) <= 1.15, counts


def test_nested_subsets_are_nested_and_seeded():
    ids = [f"g{i:04d}" for i in range(300)]
    subsets = [scaling_jobs.nested_subset(ids, n, subset_seed=0) for n in (25, 50, 100, 300)]
    for small, large in zip(subsets, subsets[1:]):
        assert large[: len(small)] == small
    assert sorted(subsets[-1]) == ids
    assert scaling_jobs.nested_subset(list(reversed(ids)), 50, 0) == subsets[1]  # order of the input irrelevant
    assert scaling_jobs.nested_subset(ids, 50, 1) != subsets[1]
    assert subsets[1] != ids[:50]  # a random order, not the sorted one
    with pytest.raises(ValueError, match="outside"):
        scaling_jobs.nested_subset(ids, 301, 0)


def test_step_rule_budgets_steps_not_epochs():
    rule = scaling_study.STUDY_PRESETS["paper-cpu"].step_rule
    plan = {n: rule.epochs(n, 32) for n in (125, 1000, 8000, 10**6)}
    assert plan[125] == (100, 400)  # the floor: 4 batches x 100 epochs
    assert plan[1000] == (25, 800)  # the reference point
    assert plan[10**6][0] == 1  # at least one epoch
    steps = [plan[n][1] for n in (125, 1000, 8000)]
    assert steps == sorted(steps)
    assert rule.epochs(33, 32) == rule.epochs(32, 32)  # a last batch of one is merged


def test_pool_splits_hold_the_grid():
    from datasets.storage import make_splits

    for study in scaling_study.STUDY_PRESETS.values():
        preset = scaling_study.STUDY_DATASETS[study.dataset]
        splits = make_splits([str(i) for i in range(preset.n_geometries)], preset.test_fraction,
                             preset.val_fraction, preset.seed)
        assert len(splits["train"]) >= max(study.n_values)
        assert len(splits["val"]) >= 6 and len(splits["test"]) >= (500 if study.name == "paper-cpu" else 10)


def test_plan_covers_the_grid_with_seeds_at_small_n(tmp_path):
    study = scaling_study.STUDY_PRESETS["paper-cpu"]
    specs = scaling_study.plan_jobs(study, tmp_path / "d", "hash", tmp_path)
    assert len(specs) == 3 * 2 * (3 * 3 + 4)  # sizes x networks x (3 seeds at N<=500, 1 above)
    assert len({s.key() for s in specs}) == len(specs)
    assert [s.n_train for s in specs] == sorted(s.n_train for s in specs)
    moved = dataclasses.replace(specs[0], root=str(tmp_path / "elsewhere"), dataset="/other/path")
    assert moved.key() == specs[0].key()  # where a job runs does not change its result
    assert dataclasses.replace(specs[0], seed=7).key() != specs[0].key()
    # the jobs train the quick recipe to the end of their step budget: no early stopping
    settings = scaling_jobs.make_method(specs[0]).train_settings()
    quick = TRAIN_PRESETS["quick"]
    assert {s.train_preset for s in specs} == {"study"} and settings.patience > max(s.epochs for s in specs)
    assert dataclasses.replace(settings, patience=quick.patience, epochs=quick.epochs, seed=0, device="cpu") == quick


# ---------------------------------------------------------------------------- the fit
def _synthetic_rows(a, b, c, n_values, n_samples=400, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sample_effect = rng.normal(0, 0.05, n_samples)
    records = []
    for n in n_values:
        iou = scaling_fit.power_law(n, a, b, c) + sample_effect + rng.normal(0, 0.03, n_samples)
        records += [{"network": "unet3d", "config": "x", "size": "s", "parameters": 1, "n_train": n, "seed": 0,
                     "sample": f"t{i:03d}", "iou": v} for i, v in enumerate(iou)]
    return pd.DataFrame(records)


def test_power_law_fit_recovers_known_parameters():
    truth = dict(a=0.85, b=1.5, c=0.5)
    rows = _synthetic_rows(**truth, n_values=(125, 250, 500, 1000, 2000, 4000, 8000))
    fit = scaling_fit.analyse(rows, n_resamples=300)["fits"]["unet3d/x"]
    for name, value in truth.items():
        low, high = fit[name]["interval"]
        assert low <= value <= high, (name, fit[name])
    assert fit["a"]["value"] == pytest.approx(truth["a"], abs=0.02)
    assert fit["c"]["value"] == pytest.approx(truth["c"], abs=0.15)
    low, high = fit["extrapolated"]["interval"]
    assert low <= scaling_fit.power_law(10_000, **truth) <= high
    assert high - low < 0.03


def test_power_law_needs_three_sizes():
    with pytest.raises(ValueError, match="at least 3"):
        scaling_fit.fit_power_law([10, 20, 10], [0.5, 0.6, 0.5])


def test_crossing_of_two_curves():
    # a - b N^-c equal at N = 1000: 0.9 - 10 N^-0.5 vs 0.8 - b2 N^-0.5 with b2 = 10 - 0.1 * sqrt(1000)
    b2 = 10 - 0.1 * 1000**0.5
    found = scaling_fit.crossings((0.9, 10, 0.5), (0.8, b2, 0.5), n_min=10)
    assert len(found) == 1 and found[0] == pytest.approx(1000, rel=0.01)
    assert scaling_fit.crossings((0.9, 1, 0.5), (0.8, 1, 0.5), n_min=10) == []


# ---------------------------------------------------------------------------- the study
def test_smoke_study_end_to_end(pool, uninterrupted):
    from datasets.storage import open_dataset

    root, result = uninterrupted
    assert result["complete"] and result["done"] == result["jobs"] == 6
    rows = pd.read_parquet(root / "scaling.parquet")
    assert list(rows.columns) == scaling_jobs.ROW_COLUMNS
    dataset = open_dataset(pool)
    assert set(rows["sample"]) == set(dataset.split_ids("test"))  # the evaluation set, never trained on
    assert not set(rows["sample"]) & set(dataset.split_ids("train"))
    assert sorted(rows["n_train"].unique()) == [8, 16, 32]
    assert rows["iou"].between(0, 1).all() and rows["step_rule"].nunique() == 1
    simulated_electrons_per_pixel = scaling_study.STUDY_DATASETS[SMOKE.dataset].simulated_electrons_per_pixel
    assert (rows["simulated_electrons_per_pixel"] == simulated_electrons_per_pixel).all()
    assert (rows["read_electrons_per_pixel"] == simulated_electrons_per_pixel).all()
    fits = result["analysis"]
    assert set(fits["fits"]) == {"bsevox/tiny", "unet3d/matched"}
    assert len(fits["paired_differences"]) == 3
    assert "Learning curves" in scaling_fit.format_tables(fits)
    assert (root / "fits.json").is_file()
    assert len(list((root / "jobs").glob("*/job.json"))) == 6


def test_smoke_study_stops_on_its_budget_and_resumes_to_the_same_rows(pool, uninterrupted, tmp_path):
    stopped = scaling_study.run_study(SMOKE, tmp_path, data=pool, time_budget=1e-6, progress=False)
    assert not stopped["complete"] and stopped["done"] == 0
    # one job interrupted inside its training: a deadline already past stops it after one epoch
    from datasets.storage import open_dataset

    spec = scaling_study.plan_jobs(SMOKE, pool, open_dataset(pool).meta["dataset_hash"], tmp_path)[0]
    assert spec.epochs == 2
    assert scaling_jobs._train_and_score(spec, time.monotonic() - 1, time.perf_counter()) == (None, None)
    assert (spec.folder() / "model" / "latest.pt").is_file() and not (spec.folder() / "job.json").exists()
    assert scaling_jobs.job_state(spec) == "checkpoint at epoch 1/2"
    resumed = scaling_study.run_study(SMOKE, tmp_path, data=pool, progress=False)
    assert resumed["complete"]
    pd.testing.assert_frame_equal(result_rows(tmp_path), result_rows(uninterrupted[0]))
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "jobs").glob("*/job.json")}
    again = scaling_study.run_study(SMOKE, tmp_path, data=pool, progress=False)  # every job cached
    assert again["complete"] and {p: p.stat().st_mtime_ns for p in written} == written


def test_a_part_of_the_grid_adds_to_the_folders_outputs(pool, uninterrupted, tmp_path):
    first = scaling_study.run_study(dataclasses.replace(SMOKE, n_values=(8,)), tmp_path, data=pool, progress=False)
    assert first["complete"] and first["jobs"] == 2
    assert not json.loads((tmp_path / "fits.json").read_text())["complete"]  # 2 of the grid's 6
    rest = scaling_study.run_study(dataclasses.replace(SMOKE, n_values=(16, 32)), tmp_path, data=pool, progress=False)
    assert rest["jobs"] == 4
    pd.testing.assert_frame_equal(result_rows(tmp_path), result_rows(uninterrupted[0]))  # all 3 N, not only 16, 32
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert fits["complete"] and fits["study"]["n_values"] == [8, 16, 32]
    states = scaling_study.describe_states(SMOKE, tmp_path, pool)
    assert states.startswith(f"jobs in {tmp_path}: 6 of 6 done") and states.count("done (mIoU 0.") == 6


def test_a_finished_pool_in_the_folder_is_used_as_it_is(pool, tmp_path):
    """The study's data stay fixed: a finished pool is not checked against the simulator's current
    defaults (this one's fake physics would not match them, and a rebuild would refuse it)."""
    import shutil

    shutil.copytree(pool, tmp_path / "dataset")
    assert scaling_study.ensure_pool(SMOKE, tmp_path) == tmp_path / "dataset"


def test_dask_local_cluster_gives_the_same_rows(pool, uninterrupted, tmp_path):
    from distributed import LocalCluster

    threads = torch.get_num_threads()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        result = scaling_study.run_study(SMOKE, tmp_path, data=pool, scheduler=cluster.scheduler_address,
                                         progress=False)
    assert torch.get_num_threads() == threads
    assert result["complete"]
    pd.testing.assert_frame_equal(result_rows(tmp_path), result_rows(uninterrupted[0]))


def test_command_line_plan_and_unknown_names(capsys, tmp_path):
    assert scaling_study.main(["--preset", "paper-cpu", "--plan", "--n-values", "125,250",
                               "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "N =   250" in out and "jobs: none run yet" in out
    # N=125: 100 epochs x 125; N=250: 50 x 250; 3 seeds each; validation every 2nd epoch (study preset)
    assert f"{3 * (100 * 125 + 50 * 250):,} training and {3 * (50 + 25) * 306:,} validation" in out
    assert scaling_study.main(["--preset", "paper-cpu", "--plan", "--n-values", "125,250", "--seeds", "1"]) == 0
    assert f"{100 * 125 + 50 * 250:,} training" in capsys.readouterr().out
    assert scaling_study.main(["--preset", "paper-cpu", "--plan", "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    assert scaling_study.main(["--preset", "nope", "--plan"]) == 2
    assert "known: smoke, paper-cpu" in capsys.readouterr().err
    assert scaling_study.main(["--sizes", "7M", "--plan"]) == 2
