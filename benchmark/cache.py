"""The results folder of a preset and the run cache.

Layout (docs/architecture.md)::

    outputs/<preset>/data/                       the dataset
    outputs/<preset>/models/<method>-<config>/   trained models
    outputs/<preset>/runs/<run_key>/             rows.parquet, volumes.npz, summary.json
    outputs/<preset>/results.parquet             all rows of all runs (rebuilt after each run)
    outputs/<preset>/report.html                 the report
    outputs/<preset>/cache/                      thresholds chosen on validation, custom-case stacks

A run folder is written under a temporary name and renamed into place in one step, only
after the run succeeded: a folder ``runs/<run_key>/`` is always complete, a failed or
interrupted run leaves nothing behind, and a finished run is never redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from methods.base import label_of

#: columns of rows.parquet / results.parquet, in order
ROW_COLUMNS = [
    "method", "label", "config", "variant", "tta", "case", "sample", "iou", "class_mean_iou", "mre", "precision", "recall",
    "threshold", "threshold_rule", "per_depth_iou", "seconds_per_volume", "device", "parameters",
    "macs", "seed", "preset", "dataset_hash", "git_commit", "versions", "run_key", "created_utc",
]
RUN_FILES = ("rows.parquet", "volumes.npz", "summary.json")
#: a result is identified by these columns; results.parquet keeps the newest row of each
#: (older runs of the same thing, e.g. before a code change, stay cached in runs/ but not here)
RESULT_IDENTITY = ["method", "config", "variant", "case", "sample", "threshold_rule", "seed",
                   "preset", "device"]
DEFAULT_OUTPUTS = Path("outputs")


def run_key(fields: dict) -> str:
    """Hash (16 hex digits) of everything a run's result depends on (JSON, sorted keys)."""
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)
    return path


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def normalise_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows in the contract's column order with stable dtypes (counts as nullable ``Int64``).
    Rows written before methods declared a ``label`` get the method's id as label."""
    if "label" not in rows.columns and "method" in rows.columns:
        rows = rows.assign(label=[label_of(m) for m in rows["method"]])
    if "tta" not in rows.columns:  # rows from before test-time averaging existed
        rows = rows.assign(tta=False)
    if "class_mean_iou" not in rows.columns:  # rows from before the class-mean IoU was scored
        rows = rows.assign(class_mean_iou=np.nan)
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    extra = [c for c in rows.columns if c not in ROW_COLUMNS]
    rows = rows[ROW_COLUMNS + extra].copy()
    for column in ("parameters", "macs"):
        rows[column] = pd.array(rows[column], dtype="Int64")
    rows["seed"] = rows["seed"].astype("int64")
    for column in ("iou", "class_mean_iou", "mre", "precision", "recall", "threshold", "seconds_per_volume"):
        rows[column] = rows[column].astype("float64")
    return rows


class ResultsStore:
    """The results folder of one preset (``outputs/<preset>/`` by default).

    A run folder that cannot be read (a truncated parquet, a corrupt summary) is set aside as
    ``runs/.unreadable-<key>-<n>`` with a warning, so the run is recomputed and one bad folder
    never breaks the results table or later runs.
    """

    def __init__(self, root, log=None):
        self.root = Path(root)
        self.log = log or _warn

    data_dir = property(lambda self: self.root / "data")
    models_dir = property(lambda self: self.root / "models")
    runs_dir = property(lambda self: self.root / "runs")
    cache_dir = property(lambda self: self.root / "cache")
    results_path = property(lambda self: self.root / "results.parquet")
    report_path = property(lambda self: self.root / "report.html")

    def run_dir(self, key: str) -> Path:
        return self.runs_dir / key

    def is_complete(self, key: str) -> bool:
        run_dir = self.run_dir(key)
        return all((run_dir / name).is_file() for name in RUN_FILES)

    def check_run(self, key: str) -> pd.DataFrame:
        """Read and check a finished run's files; raise ``ValueError`` naming the bad file."""
        run_dir = self.run_dir(key)
        for name in RUN_FILES:
            if not (run_dir / name).is_file():
                raise ValueError(f"{run_dir / name} is missing")
        try:
            rows = normalise_rows(pd.read_parquet(run_dir / "rows.parquet"))
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise ValueError(f"{run_dir / 'rows.parquet'} is unreadable ({type(err).__name__}: {err})") from err
        try:
            json.loads((run_dir / "summary.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{run_dir / 'summary.json'} is unreadable ({err})") from err
        try:
            with np.load(run_dir / "volumes.npz", allow_pickle=False) as volumes:
                volumes.files  # noqa: B018 - reads the zip directory
        except Exception as err:  # noqa: BLE001 - zipfile/numpy raise several types
            raise ValueError(f"{run_dir / 'volumes.npz'} is unreadable ({type(err).__name__}: {err})") from err
        return rows

    def set_aside(self, key: str, reason: str) -> Path:
        """Move an unreadable run folder out of the way (kept for inspection) and warn."""
        n = 0
        while (target := self.runs_dir / f".unreadable-{key}-{n}").exists():
            n += 1
        os.replace(self.run_dir(key), target)
        self.log(f"warning: set aside unreadable run {key} ({reason}) as {target}; it will be recomputed")
        return target

    def load_rows(self, key: str) -> pd.DataFrame | None:
        """The rows of a finished run, or ``None`` when the run is not cached (or was unreadable)."""
        if not self.run_dir(key).exists():
            return None
        try:
            return self.check_run(key)
        except ValueError as err:
            self.set_aside(key, str(err))
            return None

    def load_summary(self, key: str) -> dict:
        return json.loads((self.run_dir(key) / "summary.json").read_text())

    def save_run(self, key: str, rows: pd.DataFrame, volumes: dict[str, np.ndarray],
                 summary: dict) -> Path:
        """Write a finished run's three files and move the folder into place in one rename."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        final = self.run_dir(key)
        tmp = self.runs_dir / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            normalise_rows(rows).to_parquet(tmp / "rows.parquet", index=False)
            np.savez_compressed(tmp / "volumes.npz", **volumes)
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
            if final.exists():  # an unreadable leftover, or a twin run that finished first
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def run_keys(self) -> list[str]:
        """Keys of all run folders (complete or not; :meth:`load_rows` checks them)."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def rebuild_results(self) -> pd.DataFrame:
        """Write ``results.parquet`` (atomically): the rows of every readable run, the newest
        one per ``RESULT_IDENTITY`` when a thing was run more than once. Unreadable run folders
        are set aside (:meth:`set_aside`), never a reason to fail."""
        frames = [rows for key in self.run_keys() if (rows := self.load_rows(key)) is not None and len(rows)]
        if frames:
            results = pd.concat(frames, ignore_index=True)
            results = (results.sort_values(["created_utc", "run_key"], kind="stable")
                       .drop_duplicates(RESULT_IDENTITY, keep="last")
                       .sort_values(["case", "method", "config", "variant", "threshold_rule", "sample"],
                                    kind="stable")
                       .reset_index(drop=True))
        else:
            results = normalise_rows(pd.DataFrame({c: [] for c in ROW_COLUMNS}))
        write_parquet_atomic(results, self.results_path)
        return results


def _warn(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)
