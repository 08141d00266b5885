"""benchmark.runner: run layout, caching, failed runs, planning, custom case, and one real
end-to-end run on the smoke preset."""

import json
import math
import re
from pathlib import Path

import fakes
import numpy as np
import pandas as pd
import pytest

from benchmark.cache import (
    DuplicateResultsError,
    ResultsStore,
    superseded_runs,
    write_parquet_atomic,
)
from benchmark.doctor import diagnose
from benchmark.errors import BenchmarkError, UnknownNameError, UsageError
from benchmark.runner import Benchmark, ModelSpec, RunSpec
from benchmark.schema import ROW_COLUMNS
from methods import base
from methods.base import HyperParam, Method
from reports.results import load_inputs

DEPTH, SIZE = 20, 4


class FakeMethod(Method):
    """Classical stand-in: the Cu probability of a column is the stack's first channel."""

    name = "fake"
    hyperparams = {"gain": HyperParam(1.0, doc="scale of the probability")}
    calls = 0
    fail = False

    def _reconstruct(self, stacks, energies_keV):
        FakeMethod.calls += 1
        if FakeMethod.fail:
            raise RuntimeError("fake reconstruction failed")
        prob = np.repeat(stacks[:, :1], self.depth, axis=1) * self.params["gain"]
        return np.clip(prob, 0, 1)


def column_sample(columns, extra=()):
    """Label with Cu in full-depth columns (y, x); bse channel 0 bright there (and at ``extra``)."""
    label = np.zeros((DEPTH, SIZE, SIZE), np.uint8)
    bse = np.full((2, SIZE, SIZE), 0.1, np.float32)
    for y, x in columns:
        label[:, y, x] = 1
        bse[0, y, x] = 0.9
    for y, x in extra:
        bse[0, y, x] = 0.9
    return bse, label


def as_split(items):
    """``(bse, labels, ids)`` of ``[(id, (bse, label)), ...]`` (``tests/fakes.FakeDataset``'s split form)."""
    return (np.stack([b for _, (b, _) in items]), np.stack([lab for _, (_, lab) in items]),
            [sid for sid, _ in items])


class FakeDataset(fakes.FakeDataset):
    """The runner's test data: two test samples, one validation sample and a nanocube case,
    simulated and read at ``simulated_electrons_per_pixel``, no dose-study data."""

    def __init__(self, energies=(1.0, 3.0), simulated_electrons_per_pixel=2, extra_splits: dict | None = None):
        splits = {"test": [("t0", column_sample([(0, 0)])), ("t1", column_sample([(1, 1)], extra=[(2, 2)]))],
                  "val": [("v0", column_sample([(3, 3)]))], **(extra_splits or {})}
        cases = {"nanocube": [{"id": "position1", "bse": b, "label": lab}
                              for b, lab in [column_sample([(0, 1), (0, 2)])]]}
        super().__init__({name: as_split(items) for name, items in splits.items()}, cases=cases,
                         energies_keV=energies, simulated_electrons_per_pixel=simulated_electrons_per_pixel,
                         meta={"settings": {"energies_keV": list(energies),
                                            "electrons_per_pixel": simulated_electrons_per_pixel,
                                            "cutoff_eV": 50.0, "elastic": None, "stopping": None}})
        self.path = Path("/nonexistent/fake-dataset")


@pytest.fixture
def fake_method(monkeypatch):
    monkeypatch.setitem(base.REGISTRY, "fake", f"{__name__}:FakeMethod")
    monkeypatch.setattr(FakeMethod, "calls", 0)
    monkeypatch.setattr(FakeMethod, "fail", False)
    return FakeMethod


def bench(tmp_path, dataset=None, **kwargs):
    log = kwargs.pop("log", lambda message: None)
    return Benchmark("smoke", results_dir=tmp_path / "out", dataset=dataset or FakeDataset(),
                     progress=False, log=log, **kwargs)


def test_run_writes_rows_volumes_summary_and_results(tmp_path, fake_method):
    b = bench(tmp_path)
    spec = RunSpec(ModelSpec("fake"), "test", "fixed-0.5")
    rows = b.run(spec)
    assert list(rows.columns) == ROW_COLUMNS
    assert rows["sample"].tolist() == ["t0", "t1"]
    assert set(rows["simulated_electrons_per_pixel"]) == set(rows["read_electrons_per_pixel"]) == {2}
    # t0 perfect; t1 predicts one extra full-depth column: IoU 20/40, volume error 20/20
    assert rows["iou"].tolist() == pytest.approx([1.0, 0.5])
    assert rows["mre"].tolist() == pytest.approx([0.0, 1.0])
    assert rows["precision"].tolist() == pytest.approx([1.0, 0.5])
    assert rows["recall"].tolist() == pytest.approx([1.0, 1.0])
    assert json.loads(rows["per_depth_iou"][1]) == pytest.approx([0.5] * DEPTH)
    assert set(rows["threshold"]) == {0.5} and set(rows["threshold_rule"]) == {"fixed-0.5"}
    assert set(rows["config"]) == {"default"} and set(rows["variant"]) == {"full"}
    assert (rows["seconds_per_volume"] > 0).all()
    assert rows["device"][0].startswith("cpu (")
    assert rows["dataset_hash"][0] == "fakehash0001" and rows["preset"][0] == "smoke"
    assert "numpy" in json.loads(rows["versions"][0])

    key = rows["run_key"][0]
    run_dir = b.store.run_dir(key)
    with np.load(run_dir / "volumes.npz") as v:
        assert v["ids"].tolist() == ["t0", "t1"]
        assert v["gt"].dtype == np.uint8 and v["gt"].shape == (2, DEPTH, SIZE, SIZE)
        assert v["prob"].dtype == np.float16 and v["binary"].dtype == np.uint8
        assert v["bse"].shape == (2, 2, SIZE, SIZE) and v["energies_keV"].tolist() == [1.0, 3.0]
        assert int(v["binary"][1].sum()) == 2 * DEPTH
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run_key"] == key and summary["case"] == "test"
    assert summary["metrics"]["miou"]["mean"] == pytest.approx(0.75)
    assert summary["metrics"]["miou"]["low"] <= 0.75 <= summary["metrics"]["miou"]["high"]
    assert {"git_commit", "versions", "device", "created_utc"} <= set(summary["provenance"])
    results = pd.read_parquet(b.store.results_path)
    assert len(results) == 2 and results["run_key"].unique().tolist() == [key]


def test_second_run_does_no_work(tmp_path, fake_method):
    spec = RunSpec(ModelSpec("fake"), "nanocube", "validation")
    first = bench(tmp_path).run(spec)
    calls = fake_method.calls
    assert calls > 0
    again = bench(tmp_path).run(spec)  # a fresh process would see the same
    assert fake_method.calls == calls
    pd.testing.assert_frame_equal(first, again)
    # another threshold rule is another run
    bench(tmp_path).run(RunSpec(ModelSpec("fake"), "nanocube", "fixed-0.5"))
    assert fake_method.calls > calls
    assert len(ResultsStore(tmp_path / "out").run_keys()) == 2


def test_failed_run_is_not_cached(tmp_path, fake_method):
    spec = RunSpec(ModelSpec("fake"), "test", "fixed-0.5")
    fake_method.fail = True
    with pytest.raises(RuntimeError, match="fake reconstruction failed"):
        bench(tmp_path).run(spec)
    runs = tmp_path / "out" / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []  # nothing, not even a temporary
    fake_method.fail = False
    rows = bench(tmp_path).run(spec)
    assert fake_method.calls > 1 and len(rows) == 2


def test_corrupt_cached_run_is_set_aside_and_recomputed(tmp_path, fake_method):
    """A truncated rows.parquet must not poison later runs: it is set aside, warned about and
    recomputed, and rebuilding results.parquet never fails because of it."""
    spec = RunSpec(ModelSpec("fake"), "test", "fixed-0.5")
    other = RunSpec(ModelSpec("fake"), "nanocube", "fixed-0.5")
    b = bench(tmp_path)
    b.run(spec)
    key = b.executor.run_key(spec)
    rows_file = tmp_path / "out" / "runs" / key / "rows.parquet"
    rows_file.write_bytes(rows_file.read_bytes()[:40])  # truncated
    calls = fake_method.calls
    assert len(bench(tmp_path).run(other))  # a new run is not held up by the bad folder
    messages = []
    again = bench(tmp_path, log=messages.append).run(spec)  # asked for again, the bad run is set aside ...
    assert any("set aside unreadable run" in m for m in messages)
    assert (tmp_path / "out" / "runs" / f".unreadable-{key}-0").is_dir()
    assert fake_method.calls > calls and len(again) == 2  # ... and recomputed
    rows_file.write_bytes(rows_file.read_bytes()[:40])  # truncated again: a rebuild sets it aside, never fails
    results = ResultsStore(tmp_path / "out", log=messages.append).rebuild_results()
    assert set(results["case"]) == {"nanocube"} and (tmp_path / "out" / "runs" / f".unreadable-{key}-1").is_dir()


def test_results_keep_the_newest_run_of_each_result(tmp_path, fake_method):
    """A newer run of the same results (here: made by older code with 2 threads, the thread count
    in its key and device) supersedes the older one in results.parquet; both stay cached."""
    store = ResultsStore(tmp_path / "out")
    rows = bench(tmp_path).run(RunSpec(ModelSpec("fake"), "test", "fixed-0.5"))
    newer = rows.assign(run_key="0" * 16, created_utc="2999-01-01T00:00:00+00:00", iou=0.25,
                        device="cpu (Some CPU, 2 threads)")
    store.save_run("0" * 16, newer, {"ids": np.array(["t0", "t1"])}, {"run_key": "0" * 16})
    results = store.rebuild_results()
    assert len(store.run_keys()) == 2  # both runs stay cached ...
    assert results["run_key"].unique().tolist() == ["0" * 16]  # ... the newest is reported
    assert results["iou"].tolist() == [0.25, 0.25]
    assert superseded_runs(store.all_run_rows()) == {rows["run_key"][0]: ["0" * 16]}
    [note] = [f for f in diagnose(store.root) if "superseded" in f.problem]
    assert note.ok and note.item == str(store.run_dir(rows["run_key"][0])) and "0" * 16 in note.problem
    store.results_path.unlink()  # the report's fallback reads every run folder: it refuses the doubled results
    with pytest.raises(ValueError, match=r"runs/\*/rows.parquet in .* counts 1 result set\(s\) more than once"):
        load_inputs(store.root)


def test_the_thread_count_never_changes_which_result_counts(tmp_path, fake_method):
    """Issue 23: 1 thread and then 2 threads is one cache entry and one row set; the thread
    count is recorded with the rows, not keyed."""
    import torch

    spec = RunSpec(ModelSpec("fake"), "test", "fixed-0.5")
    before = torch.get_num_threads()
    try:
        first = bench(tmp_path, threads=1).run(spec)
        calls = fake_method.calls
        messages = []
        again = bench(tmp_path, threads=2, log=messages.append).run(spec)
    finally:
        torch.set_num_threads(before)
    assert fake_method.calls == calls and any(m.startswith("cached: ") for m in messages)
    pd.testing.assert_frame_equal(first, again)
    assert first["device"][0].endswith(", 1 thread)")
    store = ResultsStore(tmp_path / "out")
    assert store.run_keys() == [first["run_key"][0]]
    assert store.load_summary(first["run_key"][0])["provenance"]["cpu_threads"] == 1
    results = store.read_results()
    assert results["sample"].tolist() == ["t0", "t1"]


def test_a_cached_run_that_no_longer_counts_is_named(tmp_path, fake_method):
    """Served from the cache while results.parquet counts a newer run of the same results (made
    by other code): the warning names the counted run and how to count this one instead."""
    store = ResultsStore(tmp_path / "out")
    spec = RunSpec(ModelSpec("fake"), "test", "fixed-0.5")
    rows = bench(tmp_path).run(spec)
    newer = rows.assign(run_key="0" * 16, created_utc="2999-01-01T00:00:00+00:00")
    store.save_run("0" * 16, newer, {"ids": np.array(["t0", "t1"])}, {"run_key": "0" * 16})
    store.rebuild_results()
    messages = []
    bench(tmp_path, log=messages.append).run(spec)
    [warning] = [m for m in messages if m.startswith("warning:")]
    assert "counts the newer run(s) " + "0" * 16 in warning and rows["run_key"][0] in warning
    assert f"doctor --results {tmp_path / 'out'} --fix" in warning


def test_duplicated_results_are_refused_with_the_command_that_removes_them(tmp_path, fake_method):
    store = ResultsStore(tmp_path / "out")
    rows = bench(tmp_path).run(RunSpec(ModelSpec("fake"), "test", "fixed-0.5"))
    stray = rows.assign(run_key="f" * 16, device="cpu (Some CPU, 2 threads)")  # as the old code kept
    write_parquet_atomic(pd.concat([rows, stray], ignore_index=True), store.results_path)
    with pytest.raises(DuplicateResultsError) as caught:
        store.read_results()
    message = str(caught.value)
    # the run identity: benchmark.schema.RUN_IDENTITY (the read dose, once benchmark.cache follows it)
    assert re.search("method fake, config default, variant full, case test, read_electrons_per_pixel 2, acquisition ideal, seed 0, "
                     "threshold_rule fixed-0.5", message)
    assert "4 rows for 2 samples" in message and "f" * 16 in message and rows["run_key"][0] in message
    assert message.endswith(f"python -m benchmark doctor --results {tmp_path / 'out'} --fix")
    store.rebuild_results()  # what that command does
    assert store.read_results()["run_key"].unique().tolist() == [rows["run_key"][0]]


def test_validation_threshold_is_cached_per_model(tmp_path, fake_method):
    b = bench(tmp_path)
    assert b.thresholds.validation(ModelSpec("fake")) == pytest.approx(0.5)  # ties: nearest 0.5
    calls = fake_method.calls
    assert bench(tmp_path).thresholds.validation(ModelSpec("fake")) == pytest.approx(0.5)
    assert fake_method.calls == calls
    assert len(list((tmp_path / "out" / "cache" / "thresholds").glob("fake-*.json"))) == 1


def test_custom_case_end_to_end(tmp_path, fake_method):
    from datasets.scene import paper_block

    copper = np.zeros((20, 20, 20), bool)
    copper[0:4, 8:12, 8:12] = True  # a 4 nm cube at the top of the block
    path = tmp_path / "my_cube.npy"
    np.save(path, paper_block(copper))
    dataset = FakeDataset(energies=(1.0, 3.0), simulated_electrons_per_pixel=2)
    b = bench(tmp_path, dataset=dataset)
    specs = b.plan(["fake"], [str(path)], threshold_rule="fixed-0.5")
    rows = b.run_all(specs)
    from benchmark.cases import content_tag

    assert rows["case"].tolist() == [f"custom:my_cube-{content_tag(path)}"] and rows["sample"].tolist() == ["my_cube"]
    assert 0.0 <= rows["iou"][0] <= 1.0
    with np.load(b.store.run_dir(rows["run_key"][0]) / "volumes.npz") as v:
        assert int(v["gt"].sum()) == 64  # the cube's Cu voxels
        assert v["bse"].shape == (1, 2, 20, 20)  # simulated at the dataset's two energies
    assert len(list((tmp_path / "out" / "cache" / "custom").glob("my_cube-*.npz"))) == 1
    calls = fake_method.calls
    bench(tmp_path, dataset=dataset).run_all(specs)
    assert fake_method.calls == calls


def test_custom_cases_of_the_same_file_name_stay_apart(tmp_path, fake_method):
    """Issue 13.8: a/cube.npy and b/cube.npy are two cases, both in results.parquet."""
    from datasets.scene import paper_block

    paths = []
    for folder, depth in (("a", 0), ("b", 10)):
        copper = np.zeros((20, 20, 20), bool)
        copper[depth:depth + 4, 8:12, 8:12] = True
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "cube.npy")
        np.save(paths[-1], paper_block(copper))
    dataset = FakeDataset(energies=(1.0, 3.0), simulated_electrons_per_pixel=2)
    b = bench(tmp_path, dataset=dataset)
    b.run_all(b.plan(["fake"], [str(p) for p in paths], threshold_rule="fixed-0.5"))
    results = pd.read_parquet(tmp_path / "out" / "results.parquet")
    cases = sorted(results["case"].unique())
    assert len(cases) == 2 and all(c.startswith("custom:cube-") for c in cases)


def test_bad_custom_case_file_is_a_usage_error(tmp_path, fake_method):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 5), np.uint8))
    with pytest.raises(UsageError, match="3-D"):
        bench(tmp_path).plan(["fake"], [str(bad)])
    with pytest.raises(UsageError, match="not found"):
        bench(tmp_path).plan(["fake"], [str(tmp_path / "missing.npy")])


def test_plan_expands_and_skips_what_does_not_apply(tmp_path, fake_method):
    b = bench(tmp_path)
    specs = b.plan(["bsevox", "fake"], ["ablation", "test"])
    ablation = [s for s in specs if s.case == "ablation"]
    assert [s.model.variant for s in ablation] == ["full", "no-sope", "no-s2mlp", "no-convffn"]
    assert {s.model.method for s in ablation} == {"bsevox"}
    assert {s.model.config for s in ablation} == {b.preset.ablation_config}
    assert {(s.model.method, s.model.config) for s in specs if s.case == "test"} == {
        ("bsevox", "tiny"), ("fake", "default")}
    # oracle thresholds only for MED-SEM on the paper's cases
    oracle = b.plan(["all"], ["all"], threshold_rule="oracle")
    assert {(s.model.method, s.case) for s in oracle} == {("medsem", "nanocube")}
    with pytest.raises(BenchmarkError, match="nothing to run"):
        b.plan(["fake"], ["ablation"])
    # every method on every case, ablation only for bsevox
    everything = b.plan(["all"], ["all"])
    assert {s.case for s in everything} == {"nanocube", "test", "ablation", "dose", "realism"}
    assert {s.read_electrons_per_pixel for s in everything if s.case == "dose"} == {2}  # the fake data: 2 e-/px
    assert {s.read_electrons_per_pixel for s in everything if s.case != "dose"} == {None}
    assert {s.acquisition for s in everything if s.case != "realism"} == {None}
    assert len({s.acquisition for s in everything if s.case == "realism"}) == 20
    assert ModelSpec("bsevox", "tiny", "no-sope") in {s.model for s in everything}


def test_unknown_names_list_the_known_ones(tmp_path, fake_method):
    b = bench(tmp_path)
    with pytest.raises(UnknownNameError, match="unknown method 'nosuch'; known: .*bsevox.*medsem"):
        b.plan(["nosuch"], ["test"])
    with pytest.raises(UnknownNameError, match="unknown case 'nosuch'; known: nanocube, test, ablation"):
        b.plan(["fake"], ["nosuch"])
    with pytest.raises(UnknownNameError, match="unknown bsevox config 'huge'; known: tiny"):
        b.plan(["bsevox"], ["test"], config="huge")
    with pytest.raises(UnknownNameError, match="known: fixed-0.5, validation, oracle"):
        b.plan(["fake"], ["test"], threshold_rule="best")
    with pytest.raises(UnknownNameError, match="unknown preset 'nosuch'; known: smoke, quick, standard, paper"):
        Benchmark("nosuch")


def test_model_params_carry_training_preset_and_seed(tmp_path, fake_method):
    b = bench(tmp_path, seed=7)
    params = b.models.params(ModelSpec("bsevox", "tiny", "no-convffn"))
    assert params == {"config": "tiny", "convffn": False, "preset": "smoke", "seed": 7, "tta": False}
    assert b.models.directory(ModelSpec("bsevox", "tiny")).name == "bsevox-tiny-seed7"
    assert bench(tmp_path).models.directory(ModelSpec("bsevox", "tiny", "no-sope")).name == "bsevox-tiny-no-sope"
    assert b.models.params(ModelSpec("fake")) == {}


@pytest.mark.slow
def test_smoke_preset_end_to_end(tmp_path):
    """The real pipeline: build the smoke dataset, train tiny BSE-VoxNets, reconstruct the
    nanocube case, pick the threshold on the validation split, score, cache."""
    b = Benchmark("smoke", results_dir=tmp_path / "smoke", progress=False)
    rows = b.run_all(b.plan(["bsevox"], ["nanocube"]))
    assert rows["sample"].tolist() == ["position1", "position2", "position3", "position4"]
    assert rows["method"].unique().tolist() == ["bsevox"] and rows["config"][0] == "tiny"
    assert rows["iou"].between(0, 1).all()
    assert not rows["mre"].isna().any()
    assert rows["parameters"][0] > 0 and rows["macs"][0] > 0
    assert rows["threshold_rule"][0] == "validation"
    model_dir = tmp_path / "smoke" / "models" / "bsevox-tiny"
    assert (model_dir / "method.json").is_file() and (model_dir / "summary.json").is_file()
    before = {p: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    again = Benchmark("smoke", results_dir=tmp_path / "smoke", progress=False)
    pd.testing.assert_frame_equal(again.run_all(again.plan(["bsevox"], ["nanocube"])), rows)
    assert {p: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before  # not retrained
    assert again.models.loaded == {}  # nothing loaded: the cached run did no work
    assert math.isfinite(pd.read_parquet(tmp_path / "smoke" / "results.parquet")["iou"].mean())


def test_the_dose_case_plans_one_run_per_reachable_dose(tmp_path, fake_method):
    bench = Benchmark("smoke", results_dir=tmp_path, dataset=FakeDataset(simulated_electrons_per_pixel=60), progress=False)
    specs = bench.plan(["fake"], ["dose"])
    assert {s.case for s in specs} == {"dose"}
    assert [s.read_electrons_per_pixel for s in specs] == [10, 25, 50, 60]
    rows = bench.run(specs[0])
    assert set(rows["sample"]) == {"t0", "t1", "position1"}  # the test split and the named cases
    assert set(rows["case"]) == {"dose"}
    assert set(rows["read_electrons_per_pixel"]) == {10} and set(rows["simulated_electrons_per_pixel"]) == {60}
    with np.load(bench.store.run_dir(rows["run_key"][0]) / "volumes.npz") as v:  # thinned: counts of 10 primaries
        assert np.allclose(v["bse"].astype(float) * 10, np.rint(v["bse"].astype(float) * 10), atol=2e-2)
    top = bench.run(specs[-1])  # another read dose is another run, kept beside the first in results.parquet
    assert top["run_key"][0] != rows["run_key"][0] and set(top["read_electrons_per_pixel"]) == {60}
    results = pd.read_parquet(bench.store.results_path)
    assert sorted(set(results["read_electrons_per_pixel"])) == [10, 60] and len(results) == 6
    with pytest.raises(UsageError, match="can only be lowered"):
        bench.run(RunSpec(ModelSpec("fake"), "dose", read_electrons_per_pixel=100))


def test_read_dose_picks_levels_of_the_dose_case(tmp_path, fake_method):
    bench = Benchmark("smoke", results_dir=tmp_path, dataset=FakeDataset(simulated_electrons_per_pixel=60), progress=False,
                      log=lambda m: None)
    specs = bench.plan(["fake"], ["test", "dose"], read_doses=[25, 60, 25])
    assert [(s.case, s.read_electrons_per_pixel) for s in specs] == [("test", None), ("dose", 25), ("dose", 60)]
    with pytest.raises(UnknownNameError, match=r"unknown dose level \(e-/pixel\) '7'; known: 10, 25, 50, 60"):
        bench.plan(["fake"], ["dose"], read_doses=[7])
    with pytest.raises(UsageError, match="--case dose"):
        bench.plan(["fake"], ["test"], read_doses=[25])


def test_a_pair_that_does_not_apply_is_noted_once_for_all_dose_levels(tmp_path, fake_method):
    messages = []
    b = Benchmark("smoke", results_dir=tmp_path, dataset=FakeDataset(simulated_electrons_per_pixel=60), progress=False,
                  log=messages.append)
    with pytest.raises(BenchmarkError) as caught:  # oracle thresholds: MED-SEM on the paper's cases only
        b.plan(["fake", "medsem"], ["dose"], threshold_rule="oracle")
    assert str(caught.value).count("fake on dose") == 1 and str(caught.value).count("medsem on dose") == 1
    assert len([m for m in messages if m.startswith("skipped: fake on dose")]) == 1
