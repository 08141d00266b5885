"""The results folder of a preset and the run cache.

Layout (docs/CONTRACTS.md)::

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

#: columns of rows.parquet / results.parquet, in order
ROW_COLUMNS = [
    "method", "config", "variant", "case", "sample", "iou", "mre", "precision", "recall",
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
    """Rows in the contract's column order with stable dtypes (counts as nullable ``Int64``)."""
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    extra = [c for c in rows.columns if c not in ROW_COLUMNS]
    rows = rows[ROW_COLUMNS + extra].copy()
    for column in ("parameters", "macs"):
        rows[column] = pd.array(rows[column], dtype="Int64")
    rows["seed"] = rows["seed"].astype("int64")
    for column in ("iou", "mre", "precision", "recall", "threshold", "seconds_per_volume"):
        rows[column] = rows[column].astype("float64")
    return rows


class ResultsStore:
    """The results folder of one preset (``outputs/<preset>/`` by default)."""

    def __init__(self, root):
        self.root = Path(root)

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

    def load_rows(self, key: str) -> pd.DataFrame | None:
        """The rows of a finished run, or ``None`` when the run is not cached."""
        if not self.is_complete(key):
            return None
        return pd.read_parquet(self.run_dir(key) / "rows.parquet")

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
            if final.exists():  # an incomplete leftover (cannot happen through this class) or a twin run
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def run_keys(self) -> list[str]:
        """Keys of all finished runs."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and self.is_complete(p.name))

    def rebuild_results(self) -> pd.DataFrame:
        """Write ``results.parquet`` (atomically): the rows of every finished run, the newest
        one per ``RESULT_IDENTITY`` when a thing was run more than once."""
        frames = [pd.read_parquet(self.run_dir(key) / "rows.parquet") for key in self.run_keys()]
        frames = [normalise_rows(f) for f in frames if len(f)]
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
