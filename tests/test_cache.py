"""The run cache and results folder (benchmark/cache.py) and doctor's check of results.parquet,
on rows of the one schema (benchmark.schema.ResultRow)."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest

from benchmark.cache import (
    DuplicateResultsError,
    ResultsStore,
    check_unique_results,
    duplicated_results,
    newest_rows,
    superseded_runs,
)
from benchmark.doctor import check_runs
from benchmark.schema import ROW_COLUMNS, ResultRow

ROW = ResultRow(
    method="unet3d", label="3D U-Net", config="tiny", variant="full", tta=False, case="test",
    sample="g000001", simulated_electrons_per_pixel=60, read_electrons_per_pixel=60, acquisition="ideal", iou=0.5,
    class_mean_iou=0.7, mre=0.1, precision=0.6, recall=0.5, threshold=0.5, threshold_rule="validation",
    per_depth_iou="[0.5]", seconds_per_volume=0.01, device="cpu", parameters=10, macs=None, seed=0,
    preset="quick", dataset_hash="abc", git_commit="deadbeef", versions="{}", run_key="k1",
    created_utc="2026-01-01T00:00:00+00:00",
)


def frame(*rows: ResultRow) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rows])


def save(store: ResultsStore, key: str, rows: pd.DataFrame) -> None:
    store.save_run(key, rows.assign(run_key=key), {"ids": np.array(["a"])}, {"run_key": key})


def test_a_run_is_saved_and_read_back_in_the_schema(tmp_path):
    store = ResultsStore(tmp_path)
    save(store, "k1", frame(ROW, replace(ROW, sample="g000002", iou=0.25)))
    rows = store.load_rows("k1")
    assert list(rows.columns) == ROW_COLUMNS
    assert rows["macs"].dtype == "Int64" and rows["read_electrons_per_pixel"].dtype == "int64"
    assert store.load_summary("k1") == {"run_key": "k1"}
    assert list(store.rebuild_results()["iou"]) == [0.5, 0.25]
    assert not list(tmp_path.glob("**/.*.tmp"))  # the atomic writers left nothing behind


def test_adding_each_run_counts_what_rebuilding_from_every_folder_counts(tmp_path):
    """``add_run_results`` (after each run) leaves results.parquet as a full rebuild would: the
    newest run of each result counted, whatever order the runs end in; without a readable
    results.parquet it rebuilds from the folders."""
    store = ResultsStore(tmp_path)
    runs = {
        "k1": frame(ROW, replace(ROW, sample="g000002")),
        "k2": frame(replace(ROW, iou=0.9, created_utc="2026-03-01T00:00:00+00:00")),  # newer, one sample
        "k3": frame(replace(ROW, case="nanocube", sample="nanocube-1")),
        "k0": frame(replace(ROW, iou=0.1, created_utc="2025-01-01T00:00:00+00:00")),  # older, ends last
    }
    for key, rows in runs.items():
        save(store, key, rows)
        added = store.add_run_results(rows.assign(run_key=key))
    assert len(added) == 3 and not added.duplicated(["case", "sample"]).any()
    pd.testing.assert_frame_equal(added, store.rebuild_results())
    assert added.set_index("sample").loc["g000001", "iou"] == 0.9  # k2's, not the older k0's
    store.results_path.write_bytes(b"not parquet")
    pd.testing.assert_frame_equal(store.add_run_results(runs["k3"].assign(run_key="k3")), added)
    assert (tmp_path / ".results.lock").is_file()


def test_rows_of_an_older_schema_are_set_aside_not_counted(tmp_path):
    store = ResultsStore(tmp_path, log=lambda message: None)
    save(store, "k1", frame(ROW))
    old = frame(ROW).drop(columns=["read_electrons_per_pixel"])
    old.to_parquet(store.run_dir("k1") / "rows.parquet")
    assert store.load_rows("k1") is None
    assert list(tmp_path.glob("runs/.unreadable-k1-*"))


def test_read_doses_are_separate_results_sorted_by_number():
    doses = [replace(ROW, case="dose", read_electrons_per_pixel=n, simulated_electrons_per_pixel=1000)
             for n in (100, 25, 1000)]
    rows = frame(*doses)
    assert duplicated_results(rows) == []
    assert list(newest_rows(rows)["read_electrons_per_pixel"]) == [25, 100, 1000]


def test_the_newest_run_of_a_result_counts_and_a_doubled_result_is_named(tmp_path):
    older = replace(ROW, run_key="old", created_utc="2026-01-01T00:00:00+00:00", iou=0.1)
    newer = replace(ROW, run_key="new", created_utc="2026-02-01T00:00:00+00:00", iou=0.9)
    rows = frame(older, newer)
    assert list(newest_rows(rows)["iou"]) == [0.9]
    assert superseded_runs(rows) == {"old": ["new"]}
    (line,) = duplicated_results(rows)
    assert "case test, read_electrons_per_pixel 60, acquisition ideal, seed 0" in line and "runs new, old" in line
    with pytest.raises(DuplicateResultsError, match="doctor --results"):
        check_unique_results(rows, tmp_path)


def test_doctor_names_a_results_file_of_an_older_schema(tmp_path):
    store = ResultsStore(tmp_path)
    frame(ROW).drop(columns=["simulated_electrons_per_pixel"]).to_parquet(store.results_path)
    (finding,) = check_runs(store)
    assert not finding.ok and "simulated_electrons_per_pixel" in finding.problem
    assert "--fix" in finding.remedy
    frame(ROW).to_parquet(store.results_path)
    assert check_runs(store)[0].ok
